/** Every plugin the daemon runs, in registration order. */
import type { Plugin } from "../plugins.ts";
import { versionPlugin } from "./version.ts";
import { introspectionPlugin } from "./introspection.ts";
import { namespacesPlugin } from "./namespaces.ts";
import { eventsPlugin } from "./events.ts";
import { nativePlugin, overlayfsPlugin, snapshotsPlugin } from "./snapshots.ts";
import { contentPlugin, contentStorePlugin } from "./content.ts";
import { imagesPlugin } from "./images.ts";
import { leasesPlugin } from "./leases.ts";
import { containersPlugin } from "./containers.ts";
import { runtimePlugin, tasksPlugin } from "./tasks.ts";
import { diffPlugin } from "./diff.ts";
import { transferPlugin } from "./transfer.ts";

export function allPlugins(): Plugin[] {
  const list: Plugin[] = [
    { type: "io.containerd.metadata.v1", id: "bolt", register() {} },
    versionPlugin,
    namespacesPlugin,
    eventsPlugin,
    overlayfsPlugin,
    nativePlugin,
    snapshotsPlugin,
    contentStorePlugin,
    contentPlugin,
    imagesPlugin,
    leasesPlugin,
    containersPlugin,
    runtimePlugin,
    tasksPlugin,
    diffPlugin,
    transferPlugin,
  ];
  list.push(introspectionPlugin(() => list));
  return list;
}
