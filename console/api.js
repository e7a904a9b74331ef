// The console's only way to the server: the public JSON API under /api/v1, with the operator's
// API key from sessionStorage in the x-api-key header. The key never goes into a URL, a log line
// or the page; it lives only as long as the browser tab.

const KEY_NAME = "peaqos-console.api-key";

export const apiKey = {
  get: () => sessionStorage.getItem(KEY_NAME),
  set: (key) => sessionStorage.setItem(KEY_NAME, key),
  clear: () => sessionStorage.removeItem(KEY_NAME),
};

/** An error answered by the API (`{"error": {code, message, details}}`), or one the browser met. */
export class ApiError extends Error {
  constructor(code, message, { status = 0, details = null, requestId = null } = {}) {
    super(message);
    this.code = code;
    this.status = status;
    this.details = details;
    this.requestId = requestId;
  }

  get isAuth() {
    return this.code === "AUTH_REQUIRED" || this.code === "AUTH_INVALID";
  }
}

/** A fresh Idempotency-Key, so a repeated click on an action is answered, not repeated. */
function idempotencyKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return "console-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** `path` relative to /api/v1, with `query` as an object (empty values left out). */
export function apiPath(path, query = {}) {
  const params = new URLSearchParams();
  for (const [name, value] of Object.entries(query)) {
    if (value !== undefined && value !== null && value !== "") params.set(name, String(value));
  }
  const qs = params.toString();
  return `/api/v1${path}${qs ? `?${qs}` : ""}`;
}

/** One API call. Resolves to the parsed body (null for 204); rejects with an ApiError. */
export async function request(method, path, { query, body, key = apiKey.get() } = {}) {
  const headers = { accept: "application/json" };
  if (key) headers["x-api-key"] = key;
  if (body !== undefined) headers["content-type"] = "application/json";
  if (method === "POST") headers["idempotency-key"] = idempotencyKey();
  let response;
  try {
    response = await fetch(apiPath(path, query), {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "omit",
      cache: "no-store",
      referrerPolicy: "no-referrer",
    });
  } catch {
    throw new ApiError("NETWORK_ERROR", "The server could not be reached.");
  }
  const requestId = response.headers.get("x-request-id");
  if (response.status === 204) return null;
  let json = null;
  try {
    json = await response.json();
  } catch {
    throw new ApiError("BAD_RESPONSE", `The server answered HTTP ${response.status} without JSON.`, {
      status: response.status, requestId });
  }
  if (!response.ok) {
    const error = json && json.error;
    if (error && typeof error.code === "string") {
      throw new ApiError(error.code, error.message || "", {
        status: response.status, details: error.details || null, requestId });
    }
    throw new ApiError("BAD_RESPONSE", `The server answered HTTP ${response.status}.`, {
      status: response.status, requestId });
  }
  return json;
}

export const get = (path, query) => request("GET", path, { query });
export const post = (path, body = {}) => request("POST", path, { body });
export const patch = (path, body) => request("PATCH", path, { body });

/**
 * A list that follows `nextCursor`: `items` grows with each `more()`, `done` once the API sends
 * no cursor. The cursor is only ever passed back with the same filters.
 */
export class Paged {
  constructor(path, query = {}, limit = 100) {
    this.path = path;
    this.query = query;
    this.limit = limit;
    this.items = [];
    this.cursor = null;
    this.done = false;
    this.loading = false;
    this.error = null;
  }

  async more() {
    if (this.done || this.loading) return;
    this.loading = true;
    try {
      const page = await get(this.path, { ...this.query, limit: this.limit, cursor: this.cursor });
      this.items.push(...page.items);
      this.cursor = page.nextCursor || null;
      this.done = !this.cursor;
      this.error = null;
    } catch (error) {
      this.error = error;
      if (error.isAuth) throw error;
    } finally {
      this.loading = false;
    }
  }

  /** Reloads the pages seen so far, for a live view (keeps the first page's size). */
  async refresh() {
    try {
      const page = await get(this.path, { ...this.query, limit: Math.min(500, Math.max(this.limit, this.items.length)) });
      this.items = page.items;
      this.cursor = page.nextCursor || null;
      this.done = !this.cursor;
      this.error = null;
    } catch (error) {
      this.error = error;
      if (error.isAuth) throw error;
    }
  }
}
