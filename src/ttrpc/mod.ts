/**
 * ttrpc, containerd's small RPC protocol for shims: framing, server and client.
 *
 * @module
 */
export {
  encodeFrame,
  Flags,
  FrameReader,
  FrameWriter,
  GRPC_NAMESPACE_KEY,
  HEADER_LENGTH,
  MAX_MESSAGE_LENGTH,
  MessageType,
  TTRPC_NAMESPACE_KEY,
} from "./frame.ts";
export type { Frame } from "./frame.ts";
export { TtrpcContext, TtrpcServer } from "./server.ts";
export type { TtrpcHandler, TtrpcSend, TtrpcServerOptions, TtrpcServiceImpl } from "./server.ts";
export { isTransportError, socketPath, TtrpcClient, TtrpcStream } from "./client.ts";
export type { CallOptions, Metadata, TtrpcClientOptions } from "./client.ts";
export { Code } from "./status.ts";
