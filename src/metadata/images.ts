/**
 * Images: a name in a namespace pointing at a target descriptor (usually a
 * manifest or an index), with labels. Stored in the core `images` table.
 *
 * Semantics follow containerd 1.6's metadata image store: the namespace is
 * created implicitly by the first image, names are free-form but non-empty,
 * the target is validated on every write, empty label and annotation values
 * mean "absent", and updates take containerd's field paths.
 */
import { alreadyExists, invalidArgument, notFound } from "../core/errdefs.ts";
import { type Adaptor, parseFilters } from "../core/filters.ts";
import { type Labels, labelsOf, type MetaDb, type Row } from "./db.ts";
import { type NamespaceStore, validateLabels } from "./namespaces.ts";

/** What an image points at (an OCI descriptor, as much of it as containerd stores). */
export interface ImageTarget {
  mediaType: string;
  digest: string;
  size: number;
  annotations: Labels;
}

export interface Image {
  name: string;
  labels: Labels;
  target: ImageTarget;
  createdAt: Date;
  updatedAt: Date;
}

/** An image as a caller hands it in (timestamps are the store's business). */
export interface ImageInput {
  name: string;
  labels?: Labels;
  target: Partial<ImageTarget>;
}

/** The update paths containerd's image store accepts besides `labels.<key>`/`annotations.<key>`. */
const UPDATE_PATHS = ["labels", "target", "annotations"];

const DIGEST_HEX: Record<string, number> = { sha256: 64, sha384: 96, sha512: 128 };

/**
 * Checks `algorithm:hex` the way go-digest's Validate does for the
 * algorithms containerd links in; returns a reason when it is not valid.
 */
export function digestProblem(d: string): string | undefined {
  const i = d.indexOf(":");
  if (i <= 0) return "want the form algorithm:hex, like sha256:<64 hex digits>";
  const alg = d.slice(0, i);
  const hex = d.slice(i + 1);
  const len = DIGEST_HEX[alg];
  if (len === undefined) return `unsupported digest algorithm "${alg}"`;
  if (!/^[a-f0-9]*$/.test(hex)) return `the ${alg} part must be lowercase hex`;
  if (hex.length !== len) return `a ${alg} digest has ${len} hex digits, not ${hex.length}`;
  return undefined;
}

/** Drops empty values, which containerd treats as "not set". */
function compact(m: Labels | undefined): Labels {
  const out: Labels = {};
  for (const [k, v] of Object.entries(m ?? {})) if (v !== "") out[k] = v;
  return out;
}

function normalize(img: ImageInput): { name: string; labels: Labels; target: ImageTarget } {
  return {
    name: img.name,
    labels: compact(img.labels),
    target: {
      mediaType: img.target.mediaType ?? "",
      digest: img.target.digest ?? "",
      size: img.target.size ?? 0,
      annotations: compact(img.target.annotations),
    },
  };
}

/** Validates what containerd validates before storing an image. */
export function validateImage(img: { name: string; labels: Labels; target: ImageTarget }): void {
  if (img.name === "") throw invalidArgument("image name must not be empty");
  const what = `image "${img.name}"`;
  validateLabels(img.labels);
  const t = img.target;
  const problem = digestProblem(t.digest);
  if (problem) throw invalidArgument(`${what}: target.digest "${t.digest}" is invalid: ${problem}`);
  if (!Number.isSafeInteger(t.size) || t.size <= 0) {
    throw invalidArgument(`${what}: target.size must be greater than zero, not ${t.size}`);
  }
  if (t.mediaType === "") throw invalidArgument(`${what}: target.media_type must be set`);
}

/** Field paths for List filters, as containerd's image adaptor has them. */
export function adaptImage(img: Image): Adaptor {
  const nonEmpty = (s: string) => (s === "" ? undefined : s);
  // containerd looks map fields up by exactly one key; quote keys with dots.
  const inMap = (m: Labels, rest: string[]) => (rest.length === 1 ? m[rest[0]!] : undefined);
  return (path) => {
    const [head, ...rest] = path;
    switch (head) {
      case "name":
        return nonEmpty(img.name);
      case "target":
        if (rest.length !== 1) return undefined;
        if (rest[0] === "digest") return nonEmpty(img.target.digest);
        if (rest[0] === "mediatype") return nonEmpty(img.target.mediaType);
        return undefined;
      case "labels":
        return inMap(img.labels, rest);
      case "annotations":
        return inMap(img.target.annotations, rest);
    }
    return undefined;
  };
}

function fromRow(r: Row): Image {
  return {
    name: String(r.name),
    labels: labelsOf(r.labels),
    target: {
      mediaType: String(r.media_type),
      digest: String(r.digest),
      size: Number(r.size),
      annotations: labelsOf(r.annotations),
    },
    createdAt: new Date(Number(r.created_at)),
    updatedAt: new Date(Number(r.updated_at)),
  };
}

export class ImageStore {
  #db: MetaDb;
  #namespaces: NamespaceStore;
  constructor(db: MetaDb, namespaces: NamespaceStore) {
    this.#db = db;
    this.#namespaces = namespaces;
  }

  get(ns: string, name: string): Image {
    const r = this.#db.get("SELECT * FROM images WHERE namespace = ? AND name = ?", ns, name);
    if (!r) throw notFound(`image "${name}"`);
    return fromRow(r);
  }

  /** Images in `ns` matching any of `filters` (containerd syntax), by name. */
  list(ns: string, filters: readonly string[] = []): Image[] {
    const filter = parseFilters(filters);
    return this.#db.all("SELECT * FROM images WHERE namespace = ? ORDER BY name", ns)
      .map(fromRow)
      .filter((img) => filter.match(adaptImage(img)));
  }

  create(ns: string, input: ImageInput): Image {
    const img = normalize(input);
    validateImage(img);
    const now = Date.now();
    return this.#db.tx(() => {
      this.#namespaces.ensure(ns);
      if (this.#db.get("SELECT 1 FROM images WHERE namespace = ? AND name = ?", ns, img.name)) {
        throw alreadyExists(`image "${img.name}"`);
      }
      this.#write(ns, img, now, now, true);
      return { ...img, createdAt: new Date(now), updatedAt: new Date(now) };
    });
  }

  /**
   * Updates an image. No paths: replace labels and target. Paths:
   * `labels`, `labels.<key>`, `target` (as a whole), `annotations`,
   * `annotations.<key>` (the target's annotations). The name never changes.
   */
  update(ns: string, input: ImageInput, paths: readonly string[] = []): Image {
    if (input.name === "") throw invalidArgument("image name is required for update");
    const want = normalize(input);
    return this.#db.tx(() => {
      const cur = this.get(ns, input.name);
      let next: { name: string; labels: Labels; target: ImageTarget };
      if (paths.length === 0) next = want;
      else {
        next = { name: cur.name, labels: { ...cur.labels }, target: { ...cur.target } };
        next.target.annotations = { ...cur.target.annotations };
        for (const p of paths) {
          if (p.startsWith("labels.")) {
            setOrDelete(next.labels, p.slice("labels.".length), input.labels);
          } else if (p.startsWith("annotations.")) {
            setOrDelete(
              next.target.annotations,
              p.slice("annotations.".length),
              input.target.annotations,
            );
          } else if (p === "labels") next.labels = want.labels;
          else if (p === "target") next.target = want.target;
          else if (p === "annotations") next.target.annotations = want.target.annotations;
          else {
            throw invalidArgument(
              `cannot update "${p}" field on image "${input.name}" (allowed: ${
                UPDATE_PATHS.join(", ")
              }, labels.<key>, annotations.<key>)`,
            );
          }
        }
      }
      validateImage(next);
      const now = Date.now();
      this.#write(ns, next, cur.createdAt.getTime(), now, false);
      return { ...next, createdAt: cur.createdAt, updatedAt: new Date(now) };
    });
  }

  delete(ns: string, name: string): void {
    if (this.#db.run("DELETE FROM images WHERE namespace = ? AND name = ?", ns, name) === 0) {
      throw notFound(`image "${name}"`);
    }
  }

  #write(
    ns: string,
    img: { name: string; labels: Labels; target: ImageTarget },
    created: number,
    updated: number,
    insert: boolean,
  ): void {
    const values = [
      JSON.stringify(img.labels),
      img.target.mediaType,
      img.target.digest,
      img.target.size,
      JSON.stringify(img.target.annotations),
    ] as const;
    if (insert) {
      this.#db.run(
        `INSERT INTO images (labels, media_type, digest, size, annotations, created_at, updated_at, namespace, name)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
        ...values,
        created,
        updated,
        ns,
        img.name,
      );
    } else {
      this.#db.run(
        `UPDATE images SET labels = ?, media_type = ?, digest = ?, size = ?, annotations = ?, updated_at = ?
         WHERE namespace = ? AND name = ?`,
        ...values,
        updated,
        ns,
        img.name,
      );
    }
  }
}

function setOrDelete(m: Labels, key: string, from: Labels | undefined): void {
  const v = from?.[key];
  if (v === undefined || v === "") delete m[key];
  else m[key] = v;
}
