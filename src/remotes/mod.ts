/**
 * berth's native registry client: resolve references, fetch verified
 * manifests and blobs, authenticate, honour hosts.toml, and the concurrency
 * helpers a pull needs. See client.ts for an example.
 */
export {
  Fetcher,
  type FetchOptions,
  MANIFEST_ACCEPT,
  MAX_MANIFEST_SIZE,
  RegistryClient,
  type RegistryClientOptions,
  type Resolved,
  type RetryOptions,
} from "./client.ts";
export {
  Authorizer,
  type Challenge,
  type Credentials,
  defaultDockerConfigPath,
  loadDockerConfig,
  parseUserPass,
  parseWwwAuthenticate,
} from "./auth.ts";
export {
  type Capability,
  defaultHost,
  isLoopbackHost,
  parseHostsToml,
  type RegistryHost,
  resolveHosts,
} from "./hosts.ts";
export { InFlight, Limiter } from "./concurrency.ts";
