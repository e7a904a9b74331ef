//! EIP-712 digests of EIP-3009 `TransferWithAuthorization`, the authorization an x402 v2
//! `exact` payment on an EVM network carries (spec orders-and-payments.md §7.4 Variant B,
//! step 2a). The typed-data hashing is alloy's; recovery is [`super::eip191::recover_prehash`].

use alloy_primitives::{Address, B256, U256};
use alloy_sol_types::{Eip712Domain, SolStruct, sol};

sol! {
    /// EIP-3009's signed message.
    struct TransferWithAuthorization {
        address from;
        address to;
        uint256 value;
        uint256 validAfter;
        uint256 validBefore;
        bytes32 nonce;
    }
}

/// The token's EIP-712 domain (`name`, `version`, chain id, token contract).
pub struct TokenDomain<'a> {
    pub name: &'a str,
    pub version: &'a str,
    pub chain_id: u64,
    pub verifying_contract: Address,
}

/// The digest a wallet signs for `authorization` under `domain`.
pub fn transfer_with_authorization_hash(
    domain: &TokenDomain<'_>,
    authorization: &TransferWithAuthorization,
) -> [u8; 32] {
    let domain = Eip712Domain::new(
        Some(domain.name.to_string().into()),
        Some(domain.version.to_string().into()),
        Some(U256::from(domain.chain_id)),
        Some(domain.verifying_contract),
        None::<B256>,
    );
    authorization.eip712_signing_hash(&domain).0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::eip191::recover_prehash;

    // Signed with eth_account 0.14 (`encode_typed_data` + `sign_message`), key 0x11…11.
    const SIGNER: &str = "0x19e7e376e7c213b7e7e7e46cc70a5dd086daff2a";
    const DIGEST: &str = "bf377942164e2df51bd27abe05405d94dc37cfcce314a06fabee1bb75414fe9c";
    const SIGNATURE: &str = "0xb296c861c525cbbd7bb0b7c9eb4da1d7e834e6b876c65c95b7664ec8387578c04c865e79976df7d98e6c5893a6ca0041c9c9f5ba856f031e49378c0e4a561a281c";

    fn vector() -> (TokenDomain<'static>, TransferWithAuthorization) {
        let domain = TokenDomain {
            name: "USDC",
            version: "2",
            chain_id: 84532,
            verifying_contract: "0x036CbD53842c5426634e7929541eC2318f3dCF7e"
                .parse()
                .unwrap(),
        };
        let authorization = TransferWithAuthorization {
            from: SIGNER.parse().unwrap(),
            to: "0x209693Bc6afc0C5328bA36FaF03C514EF312287C"
                .parse()
                .unwrap(),
            value: U256::from(1000),
            validAfter: U256::from(1_700_000_000u64),
            validBefore: U256::from(1_700_003_600u64),
            nonce: B256::repeat_byte(0xab),
        };
        (domain, authorization)
    }

    #[test]
    fn digest_and_signer_match_a_wallet_library() {
        let (domain, authorization) = vector();
        let digest = transfer_with_authorization_hash(&domain, &authorization);
        assert_eq!(hex::encode(digest), DIGEST);
        assert_eq!(recover_prehash(&digest, SIGNATURE).unwrap(), SIGNER);
    }

    #[test]
    fn any_changed_field_changes_the_signer() {
        let (domain, mut authorization) = vector();
        authorization.value = U256::from(1001);
        let digest = transfer_with_authorization_hash(&domain, &authorization);
        assert_ne!(
            recover_prehash(&digest, SIGNATURE).ok().as_deref(),
            Some(SIGNER)
        );
        let (mut domain, authorization) = vector();
        domain.chain_id = 8453;
        let digest = transfer_with_authorization_hash(&domain, &authorization);
        assert_ne!(
            recover_prehash(&digest, SIGNATURE).ok().as_deref(),
            Some(SIGNER)
        );
    }
}
