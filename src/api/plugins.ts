/**
 * The daemon's plugins: each serves one part of the API (or provides a store)
 * and is listed by the introspection service with containerd's type and id.
 */
import type { DescService } from "@bufbuild/protobuf";
import type { GenServiceMethods } from "@bufbuild/protobuf/codegenv2";
import type { GrpcServer, ServiceImpl } from "./grpc.ts";
import type { Logger } from "../util/log.ts";
import type { Config } from "../config/config.ts";
import type { MetaDb } from "../metadata/db.ts";
import type { NamespaceStore } from "../metadata/namespaces.ts";
import type { LeaseStore } from "../metadata/leases.ts";
import type { ContentStore } from "../metadata/content.ts";
import type { ContainerStore } from "../metadata/containers.ts";
import type { ImageStore } from "../metadata/images.ts";
import type { Exchange } from "../events/exchange.ts";
import type { Snapshotter } from "../snapshots/snapshotter.ts";
import type { Puller } from "../images/pull.ts";
import type { SnapshotUnpacker } from "../images/unpack.ts";
import type { Collector } from "../gc/gc.ts";
import type { TaskManager } from "../runtime/manager.ts";

/** What every plugin can use: the resolved config and the shared stores. */
export interface Daemon {
  config: Config;
  log: Logger;
  db: MetaDb;
  namespaces: NamespaceStore;
  leases: LeaseStore;
  /** Namespaced content over the blobs under `<root>/content`. */
  content: ContentStore;
  containers: ContainerStore;
  images: ImageStore;
  events: Exchange;
  /** Snapshotters by name ("overlayfs", "native"), filled by their plugins. */
  snapshotters: Map<string, Snapshotter>;
  /** Server-side pulls (berth's Transfer service). */
  puller: Puller;
  unpacker: SnapshotUnpacker;
  /** Garbage collection over every store. */
  gc: Collector;
  /** Tasks: the shims the daemon started or reloaded. */
  tasks: TaskManager;
  /** Stable across restarts; reported by introspection's Server call. */
  uuid: string;
  /** Callbacks run at shutdown, in reverse order of registration. */
  onClose(fn: () => void | Promise<void>): void;
}

/** Where plugins add their services (served over gRPC, and over ttrpc too). */
export class ServiceRegistry {
  readonly grpc: GrpcServer;
  constructor(server: GrpcServer) {
    this.grpc = server;
  }
  add<S extends GenServiceMethods>(
    service: DescService & { method: S },
    impl: ServiceImpl<S>,
  ): void {
    this.grpc.addService(service, impl);
  }
}

export interface Plugin {
  type: string;
  id: string;
  requires?: string[];
  capabilities?: string[];
  exports?: Record<string, string>;
  register(ctx: { daemon: Daemon; server: ServiceRegistry }): void | Promise<void>;
}
