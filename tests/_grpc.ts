/**
 * grpc-js client definitions for protobuf-es services: the tests and benches
 * use grpc-js as a second, independent gRPC client beside Debian's `ctr`.
 */
import type * as grpc from "@grpc/grpc-js";
import {
  create,
  type DescMessage,
  type DescMethod,
  type DescService,
  fromBinary,
  type MessageInitShape,
  toBinary,
} from "@bufbuild/protobuf";

function serializers(m: DescMethod) {
  return {
    requestSerialize: (v: unknown) =>
      Buffer.from(toBinary(m.input, create(m.input, v as MessageInitShape<DescMessage>))),
    requestDeserialize: (b: Buffer) => fromBinary(m.input, b),
    responseSerialize: (v: unknown) =>
      Buffer.from(toBinary(m.output, create(m.output, v as MessageInitShape<DescMessage>))),
    responseDeserialize: (b: Buffer) => fromBinary(m.output, b),
  };
}

/** The grpc-js definition of a protobuf-es service, for makeGenericClientConstructor. */
export function grpcDefinition(service: DescService): grpc.ServiceDefinition {
  const def: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
  for (const m of service.methods) {
    def[m.localName] = {
      path: `/${service.typeName}/${m.name}`,
      requestStream: m.methodKind === "client_streaming" || m.methodKind === "bidi_streaming",
      responseStream: m.methodKind === "server_streaming" || m.methodKind === "bidi_streaming",
      originalName: m.name,
      ...serializers(m),
    };
  }
  return def;
}
