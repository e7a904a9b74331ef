#!/usr/bin/env node
// Compiles one contract of tests/evm/contracts with the pinned solc-js and writes
// {contract, compiler, abi, bytecode} as JSON.
//   node tests/evm/compile.js <Contract.sol> <ContractName> <out.json>
// tests/common/evm.rs calls it and caches the output under target/ by the source's hash.
"use strict";
const fs = require("fs");
const path = require("path");
const solc = require("solc");

const [source, contract, out] = process.argv.slice(2);
if (!source || !contract || !out) {
  console.error("usage: compile.js <Contract.sol> <ContractName> <out.json>");
  process.exit(2);
}
const file = path.basename(source);
const input = {
  language: "Solidity",
  sources: { [file]: { content: fs.readFileSync(source, "utf8") } },
  settings: {
    optimizer: { enabled: true, runs: 200 },
    // Anvil 1.x runs the latest hard fork; pinning keeps the bytecode stable across compilers.
    evmVersion: "cancun",
    outputSelection: { "*": { "*": ["abi", "evm.bytecode.object"] } },
  },
};
const output = JSON.parse(solc.compile(JSON.stringify(input)));
const errors = (output.errors || []).filter((e) => e.severity === "error");
for (const e of output.errors || []) console.error(e.formattedMessage);
if (errors.length > 0) process.exit(1);
const compiled = output.contracts[file] && output.contracts[file][contract];
if (!compiled) {
  console.error(`no contract ${contract} in ${file}`);
  process.exit(1);
}
const tmp = `${out}.${process.pid}.tmp`;
fs.mkdirSync(path.dirname(out), { recursive: true });
fs.writeFileSync(
  tmp,
  JSON.stringify({
    contract,
    compiler: solc.version(),
    abi: compiled.abi,
    bytecode: "0x" + compiled.evm.bytecode.object,
  }),
);
fs.renameSync(tmp, out);
