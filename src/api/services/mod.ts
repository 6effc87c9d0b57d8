/** Every plugin the daemon runs, in registration order. */
import type { Plugin } from "../plugins.ts";
import { versionPlugin } from "./version.ts";
import { introspectionPlugin } from "./introspection.ts";
import { namespacesPlugin } from "./namespaces.ts";
import { eventsPlugin } from "./events.ts";

export function allPlugins(): Plugin[] {
  const list: Plugin[] = [
    { type: "io.containerd.metadata.v1", id: "bolt", register() {} },
    versionPlugin,
    namespacesPlugin,
    eventsPlugin,
  ];
  list.push(introspectionPlugin(() => list));
  return list;
}
