// The CIFIX LEARN API client: openapi-fetch over the types generated from the server's own
// OpenAPI document (schema.d.ts, never edited by hand; ./check.sh --update regenerates it).
import createClient, { type Client, type Middleware } from "openapi-fetch";
import type { components, operations, paths } from "./schema.js";

export type { components, operations, paths };
export type Schemas = components["schemas"];
export type CifixClient = Client<paths>;

/**
 * `baseUrl` is the server's origin (the document's paths already start with `/api/v1`).
 * `accessToken` is asked on every request, so a refreshed token is picked up without a new client.
 */
export function createCifixClient(baseUrl: string, accessToken: () => string | undefined = () => undefined): CifixClient {
  const client = createClient<paths>({ baseUrl });
  const bearer: Middleware = {
    onRequest({ request }) {
      const token = accessToken();
      if (token) request.headers.set("Authorization", `Bearer ${token}`);
      return request;
    },
  };
  client.use(bearer);
  return client;
}
