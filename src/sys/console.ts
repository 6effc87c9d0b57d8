/**
 * Terminals for containers: the console socket `runc --console-socket` sends
 * the pty master to, and the master itself as a readable/writable stream.
 *
 * Deno cannot receive file descriptors (SCM_RIGHTS) nor wrap a raw fd, and a
 * pty master cannot be reopened: opening `/proc/self/fd/N` of a master opens
 * /dev/ptmx again and allocates a *new* pty. So both live here on FFI.
 *
 * Waiting goes through the process's one poller (fdpoll.ts); the actual
 * accept4/recvmsg/read/write calls run synchronously on non-blocking fds
 * right after, so their errno is reliable and nothing is left blocked in the
 * kernel after close.
 */
import { check, errno, libc, SysError } from "./libc.ts";
import { POLLIN, Waitable } from "./fdpoll.ts";
import { NonBlockingFile } from "./nbfile.ts";

const AF_UNIX = 1;
const SOCK_STREAM = 1;
const SOCK_NONBLOCK = 0o4000;
const SOCK_CLOEXEC = 0o2000000;
const SOL_SOCKET = 1;
const SCM_RIGHTS = 1;
const MSG_CTRUNC = 0x8;
const MSG_CMSG_CLOEXEC = 0x40000000;
const TIOCGWINSZ = 0x5413n;
const TIOCSWINSZ = 0x5414n;
const EINTR = 4;
const EAGAIN = 11;
/** sun_path's size in struct sockaddr_un. */
const SUN_PATH_MAX = 108;

function address(buf: BufferSource): bigint {
  return BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(buf)));
}

/** The size of a terminal in character cells. */
export interface WindowSize {
  /** Columns (containerd's ResizePty `width`). */
  width: number;
  /** Rows (containerd's ResizePty `height`). */
  height: number;
}

/**
 * A pty master received from a console socket: read the container's output,
 * write its input, resize it. Mirrors Deno.FsFile's read/write/readable/
 * writable so it drops into the same IO code.
 */
export class PtyMaster extends NonBlockingFile {
  /** Takes ownership of `fd` (made non-blocking here). */
  constructor(fd: number, name = "") {
    // Once every slave fd is closed a pty master reads EIO: that is end of file.
    // `name`: what the sender gave with the fd (runc sends the slave's path).
    super(fd, { name: name || `pty master fd ${fd}`, eioIsEof: true });
  }

  /** Sets the terminal's size (ioctl TIOCSWINSZ); the foreground process gets SIGWINCH. */
  resize(size: WindowSize): void {
    for (const [k, v] of Object.entries(size)) {
      if (!Number.isInteger(v) || v < 0 || v > 0xffff) {
        throw new RangeError(`Invalid terminal ${k} ${v}: must be 0..65535`);
      }
    }
    const ws = new Uint16Array([size.height, size.width, 0, 0]);
    check(
      libc().ioctl(this.fd, TIOCSWINSZ, new Uint8Array(ws.buffer)),
      "ioctl(TIOCSWINSZ)",
      this.name,
    );
  }

  /** The terminal's current size (ioctl TIOCGWINSZ). */
  size(): WindowSize {
    return windowSize(this.fd, this.name);
  }
}

/** The window size of any terminal fd (master or slave). */
export function windowSize(fd: number, name = `fd ${fd}`): WindowSize {
  const ws = new Uint16Array(4);
  check(libc().ioctl(fd, TIOCGWINSZ, new Uint8Array(ws.buffer)), "ioctl(TIOCGWINSZ)", name);
  return { height: ws[0]!, width: ws[1]! };
}

/** Options of {@link ConsoleSocket.receive}. */
export interface ReceiveOptions {
  signal?: AbortSignal;
}

/**
 * A listening unix socket for `runc create --console-socket PATH`: runc
 * connects once and sends the pty master with SCM_RIGHTS.
 *
 * ```ts
 * using sock = ConsoleSocket.listen(`${dir}/console.sock`);
 * // run `runc create --console-socket ${sock.path} ...`
 * const pty = await sock.receive();
 * ```
 */
export class ConsoleSocket {
  /** The socket's path (unlinked on close). */
  readonly path: string;
  #w: Waitable;
  #onClose = new Set<() => void>();

  private constructor(path: string, w: Waitable) {
    this.path = path;
    this.#w = w;
  }

  /** Creates the socket at `path` and listens on it. */
  static listen(path: string): ConsoleSocket {
    const name = new TextEncoder().encode(path);
    if (name.length === 0 || name.length >= SUN_PATH_MAX) {
      throw new RangeError(
        `Invalid console socket path "${path}": must be 1 to ${SUN_PATH_MAX - 1} bytes`,
      );
    }
    const fd = check(
      libc().socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0),
      "socket",
      path,
    );
    try {
      const addr = new Uint8Array(2 + SUN_PATH_MAX);
      new DataView(addr.buffer).setUint16(0, AF_UNIX, true);
      addr.set(name, 2);
      check(libc().bind(fd, addr, 2 + name.length + 1), "bind", path);
      check(libc().listen(fd, 1), "listen", path);
    } catch (err) {
      libc().close(fd);
      throw err;
    }
    return new ConsoleSocket(path, new Waitable(fd, `console socket ${path}`));
  }

  /**
   * Accepts one connection and receives the fd it sends (runc sends the pty
   * master, with its name as the message body).
   */
  async receive(opts: ReceiveOptions = {}): Promise<PtyMaster> {
    let conn: number;
    for (;;) {
      await this.#w.ready(POLLIN, opts.signal);
      const c = libc().accept4(this.#w.fd, null, null, SOCK_CLOEXEC | SOCK_NONBLOCK);
      if (c >= 0) {
        conn = c;
        break;
      }
      const e = errno();
      if (e !== EAGAIN && e !== EINTR) throw new SysError("accept4", e, this.path);
    }
    const w = new Waitable(conn, `console connection on ${this.path}`);
    const onClose = () => w.close();
    try {
      // Closing the socket also abandons a connection that never sends.
      this.#onClose.add(onClose);
      for (;;) {
        const got = recvFd(conn, this.path);
        if (got) return new PtyMaster(got.fd, got.name);
        await w.ready(POLLIN, opts.signal);
      }
    } finally {
      this.#onClose.delete(onClose);
      w.close();
    }
  }

  /** Stops listening and removes the socket file; a pending receive rejects. */
  close(): void {
    if (this.#w.closed) return;
    this.#w.close();
    for (const f of this.#onClose) f();
    try {
      Deno.removeSync(this.path);
    } catch {
      // Already gone.
    }
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/** One recvmsg on a non-blocking socket: the fd received, or null to wait for more. */
function recvFd(sock: number, path: string): { fd: number; name: string } | null {
  const data = new Uint8Array(4096);
  const control = new Uint8Array(64); // room for several fds (CMSG_SPACE(4) is 24)
  const iov = new BigUint64Array([address(data), BigInt(data.length)]);
  const msg = new Uint8Array(56); // struct msghdr on 64-bit Linux
  const mv = new DataView(msg.buffer);
  mv.setBigUint64(16, address(iov), true); // msg_iov
  mv.setBigUint64(24, 1n, true); // msg_iovlen
  mv.setBigUint64(32, address(control), true); // msg_control
  mv.setBigUint64(40, BigInt(control.length), true); // msg_controllen
  const n = Number(libc().recvmsg(sock, msg, MSG_CMSG_CLOEXEC));
  if (n < 0) {
    const e = errno();
    if (e === EAGAIN || e === EINTR) return null;
    throw new SysError("recvmsg", e, path);
  }
  // Parse the control messages: every SCM_RIGHTS fd is ours to keep or close.
  const fds: number[] = [];
  const controlLen = Number(mv.getBigUint64(40, true));
  const cv = new DataView(control.buffer);
  for (let off = 0; off + 16 <= controlLen;) {
    const len = Number(cv.getBigUint64(off, true));
    if (len < 16) break;
    if (cv.getInt32(off + 8, true) === SOL_SOCKET && cv.getInt32(off + 12, true) === SCM_RIGHTS) {
      for (let p = off + 16; p + 4 <= off + len; p += 4) fds.push(cv.getInt32(p, true));
    }
    off += (len + 7) & ~7;
  }
  const [fd, ...extra] = fds;
  for (const x of extra) libc().close(x);
  if ((mv.getInt32(48, true) & MSG_CTRUNC) !== 0) {
    if (fd !== undefined) libc().close(fd);
    throw new Error(`Console socket ${path}: control message truncated`);
  }
  if (fd === undefined) {
    throw new Error(
      n === 0
        ? `Console socket ${path}: peer closed the connection without sending a terminal`
        : `Console socket ${path}: peer sent ${n} bytes but no file descriptor`,
    );
  }
  return { fd, name: new TextDecoder().decode(data.subarray(0, n)) };
}
