/** berth's version, reported by `berth version`, the Version service and introspection. */
export const VERSION = "0.1.0";
/** The source revision; set by the release build, "dev" otherwise. */
export const REVISION = "dev";
