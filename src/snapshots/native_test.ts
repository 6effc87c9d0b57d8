import { snapshotterSuite } from "./_testsuite.ts";
import { openSnapshotter } from "./mod.ts";

snapshotterSuite("native", (ctx) => openSnapshotter("native", ctx));
