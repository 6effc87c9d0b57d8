/**
 * The one FFI boundary to libc. Every kernel call berth makes that Deno has no
 * API for goes through here: one lazy `dlopen`, a C prototype beside each
 * symbol, and errors that carry the operation, the errno name and the path.
 *
 * Rules (see shared/PLATFORM.md): errno is read right after a synchronous
 * call; namespace calls (setns, unshare) are never `nonblocking`, since those
 * run on a pool thread and would leave a random thread in the namespace.
 */

const SYMBOLS = {
  // int *__errno_location(void);
  __errno_location: { parameters: [], result: "pointer" },
  // char *strerror(int errnum);
  strerror: { parameters: ["i32"], result: "pointer" },
  // int mount(const char *source, const char *target, const char *fstype,
  //           unsigned long flags, const void *data);
  mount: { parameters: ["buffer", "buffer", "buffer", "u64", "buffer"], result: "i32" },
  // int umount2(const char *target, int flags);
  umount2: { parameters: ["buffer", "i32"], result: "i32" },
  // int fsopen(const char *fsname, unsigned int flags);  (glibc 2.36, kernel 5.2)
  fsopen: { parameters: ["buffer", "u32"], result: "i32" },
  // int fsconfig(int fd, unsigned int cmd, const char *key, const void *value, int aux);
  fsconfig: { parameters: ["i32", "u32", "buffer", "buffer", "i32"], result: "i32" },
  // int fsmount(int fd, unsigned int flags, unsigned int attr_flags);
  fsmount: { parameters: ["i32", "u32", "u32"], result: "i32" },
  // int move_mount(int from_dfd, const char *from_path, int to_dfd, const char *to_path,
  //                unsigned int flags);
  move_mount: { parameters: ["i32", "buffer", "i32", "buffer", "u32"], result: "i32" },
  // ssize_t read(int fd, void *buf, size_t count);  (fs-context error messages)
  read: { parameters: ["i32", "buffer", "usize"], result: "i64" },
  // int prctl(int option, unsigned long a2, unsigned long a3, unsigned long a4, unsigned long a5);
  prctl: { parameters: ["i32", "u64", "u64", "u64", "u64"], result: "i32" },
  // pid_t waitpid(pid_t pid, int *wstatus, int options);
  waitpid: { parameters: ["i32", "buffer", "i32"], result: "i32" },
  // int kill(pid_t pid, int sig);
  kill: { parameters: ["i32", "i32"], result: "i32" },
  // int unshare(int flags);
  unshare: { parameters: ["i32"], result: "i32" },
  // int setns(int fd, int nstype);
  setns: { parameters: ["i32", "i32"], result: "i32" },
  // int open(const char *path, int flags, mode_t mode);
  open: { parameters: ["buffer", "i32", "u32"], result: "i32" },
  // int close(int fd);
  close: { parameters: ["i32"], result: "i32" },
  // ssize_t write(int fd, const void *buf, size_t count);  (layer apply: sync, big chunks)
  write: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  // int fchown(int fd, uid_t owner, gid_t group);
  fchown: { parameters: ["i32", "u32", "u32"], result: "i32" },
  // int fchmod(int fd, mode_t mode);
  fchmod: { parameters: ["i32", "u32"], result: "i32" },
  // int futimens(int fd, const struct timespec times[2]);
  futimens: { parameters: ["i32", "buffer"], result: "i32" },
  // int socket(int domain, int type, int protocol);
  socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
  // int bind(int fd, const struct sockaddr *addr, socklen_t len);
  bind: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  // int listen(int fd, int backlog);
  listen: { parameters: ["i32", "i32"], result: "i32" },
  // int accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags);
  // (synchronous, for errno: call it on an O_NONBLOCK socket once poll says it is ready)
  accept4: { parameters: ["i32", "pointer", "pointer", "i32"], result: "i32" },
  // ssize_t recvmsg(int fd, struct msghdr *msg, int flags);  (synchronous, as accept4)
  recvmsg: { parameters: ["i32", "buffer", "i32"], result: "i64" },
  // int poll(struct pollfd *fds, nfds_t nfds, int timeout);  (blocks: pool thread)
  poll: { parameters: ["buffer", "u64", "i32"], result: "i32", nonblocking: true },
  // int fcntl(int fd, int cmd, int arg);  (the int-argument form of the variadic call)
  fcntl: { parameters: ["i32", "i32", "i32"], result: "i32" },
  // int eventfd(unsigned int initval, int flags);
  eventfd: { parameters: ["u32", "i32"], result: "i32" },
  // int ioctl(int fd, unsigned long request, void *arg);
  ioctl: { parameters: ["i32", "u64", "buffer"], result: "i32" },
  // int lchown(const char *path, uid_t owner, gid_t group);
  lchown: { parameters: ["buffer", "u32", "u32"], result: "i32" },
  // int mknod(const char *path, mode_t mode, dev_t dev);
  mknod: { parameters: ["buffer", "u32", "u64"], result: "i32" },
  // int lsetxattr(const char *path, const char *name, const void *value, size_t size, int flags);
  lsetxattr: { parameters: ["buffer", "buffer", "buffer", "usize", "i32"], result: "i32" },
  // ssize_t lgetxattr(const char *path, const char *name, void *value, size_t size);
  lgetxattr: { parameters: ["buffer", "buffer", "buffer", "usize"], result: "i64" },
  // ssize_t llistxattr(const char *path, char *list, size_t size);
  llistxattr: { parameters: ["buffer", "buffer", "usize"], result: "i64" },
  // int utimensat(int dirfd, const char *path, const struct timespec times[2], int flags);
  utimensat: { parameters: ["i32", "buffer", "buffer", "i32"], result: "i32" },
  // int fchmodat(int dirfd, const char *path, mode_t mode, int flags);
  fchmodat: { parameters: ["i32", "buffer", "u32", "i32"], result: "i32" },
  // int syncfs(int fd);
  syncfs: { parameters: ["i32"], result: "i32" },
  // pid_t getpid(void);
  getpid: { parameters: [], result: "i32" },
  // int malloc_trim(size_t pad);  (glibc: give freed heap back to the kernel)
  malloc_trim: { parameters: ["usize"], result: "i32" },
} as const satisfies Deno.ForeignLibraryInterface;

export type Libc = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

let lib: Deno.DynamicLibrary<typeof SYMBOLS> | undefined;

/** The libc symbols (opened on first use). */
export function libc(): Libc {
  lib ??= Deno.dlopen("libc.so.6", SYMBOLS);
  return lib.symbols;
}

const ERRNO_NAMES: Record<number, string> = {
  1: "EPERM",
  2: "ENOENT",
  3: "ESRCH",
  4: "EINTR",
  5: "EIO",
  9: "EBADF",
  10: "ECHILD",
  11: "EAGAIN",
  12: "ENOMEM",
  13: "EACCES",
  16: "EBUSY",
  17: "EEXIST",
  18: "EXDEV",
  19: "ENODEV",
  20: "ENOTDIR",
  21: "EISDIR",
  22: "EINVAL",
  24: "EMFILE",
  25: "ENOTTY",
  28: "ENOSPC",
  30: "EROFS",
  36: "ENAMETOOLONG",
  38: "ENOSYS",
  39: "ENOTEMPTY",
  40: "ELOOP",
  61: "ENODATA",
  95: "EOPNOTSUPP",
  98: "EADDRINUSE",
  111: "ECONNREFUSED",
};

/** The errno of the last failed synchronous libc call on this thread. */
export function errno(): number {
  const p = libc().__errno_location();
  return p ? new Deno.UnsafePointerView(p).getInt32() : 0;
}

/** An error from a libc call: `mount /a: EBUSY (Device or resource busy)`. */
export class SysError extends Error {
  readonly op: string;
  readonly errno: number;
  readonly code: string;
  readonly path: string | undefined;
  constructor(op: string, errnum: number, path?: string) {
    const code = ERRNO_NAMES[errnum] ?? `errno ${errnum}`;
    const s = libc().strerror(errnum);
    const text = s ? Deno.UnsafePointerView.getCString(s) : "";
    super(`${op}${path ? ` ${path}` : ""}: ${code}${text ? ` (${text})` : ""}`);
    this.name = "SysError";
    this.op = op;
    this.errno = errnum;
    this.code = code;
    this.path = path;
  }
}

/** Throws a SysError when a synchronous call returned -1. */
export function check<T extends number | bigint>(ret: T, op: string, path?: string): T {
  if (Number(ret) < 0) throw new SysError(op, errno(), path);
  return ret;
}

const enc = new TextEncoder();
/** A NUL-terminated C string. */
export function cstr(s: string): Uint8Array<ArrayBuffer> {
  const b = new Uint8Array(enc.encode(s).length + 1);
  enc.encodeInto(s, b);
  return b;
}
