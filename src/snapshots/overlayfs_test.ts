import { snapshotterSuite } from "./_testsuite.ts";
import { openSnapshotter } from "./mod.ts";

snapshotterSuite("overlayfs", (ctx) => openSnapshotter("overlayfs", ctx), { manyLayers: true });
