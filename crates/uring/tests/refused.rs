//! Where the kernel refuses io_uring. Alone in its own test binary: the model
//! probes the kernel once per process, and this test must be the one that does.

use std::io;

use socklab_server_kit::{bind_tcp, bind_udp, BindOptions, Config, Context};
use socklab_uring::Options;

/// `AUDIT_ARCH_*` of this build, which a seccomp filter must check before
/// trusting a syscall number.
#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xC000_003E;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xC000_00B7;

/// Makes `io_uring_setup` fail with EPERM on the calling thread (and threads it
/// starts), as Docker's default seccomp profile or `kernel.io_uring_disabled=2` do.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
fn refuse_io_uring_on_this_thread() {
    use libc::{sock_filter, sock_fprog, BPF_ABS, BPF_JEQ, BPF_JMP, BPF_K, BPF_LD, BPF_RET, BPF_W};
    let stmt = |code: u32, k: u32| sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    };
    let jeq = |k: u32, jt: u8, jf: u8| sock_filter {
        code: (BPF_JMP | BPF_JEQ | BPF_K) as u16,
        jt,
        jf,
        k,
    };
    // struct seccomp_data { int nr; __u32 arch; ... }
    let mut filter = [
        stmt(BPF_LD | BPF_W | BPF_ABS, 4),
        jeq(AUDIT_ARCH, 0, 3),
        stmt(BPF_LD | BPF_W | BPF_ABS, 0),
        jeq(libc::SYS_io_uring_setup as u32, 0, 1),
        stmt(
            BPF_RET | BPF_K,
            libc::SECCOMP_RET_ERRNO | libc::EPERM as u32,
        ),
        stmt(BPF_RET | BPF_K, libc::SECCOMP_RET_ALLOW),
    ];
    let program = sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_mut_ptr(),
    };
    // SAFETY: prctl reads the filter program during the call; both outlive it.
    unsafe {
        assert_eq!(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
        assert_eq!(
            libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER,
                &program as *const sock_fprog
            ),
            0,
            "installing the seccomp filter: {}",
            io::Error::last_os_error()
        );
    }
}

/// With io_uring_setup refused (seccomp), `availability` says why in one line and
/// `serve`/`serve_udp` return `Unsupported` with that line, serving nobody.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
#[test]
fn a_refused_io_uring_is_reported_as_unsupported() {
    // On a thread of its own: the filter stays on the thread that installed it.
    std::thread::spawn(|| {
        refuse_io_uring_on_this_thread();
        let why = socklab_uring::availability().expect_err("io_uring_setup is refused");
        assert!(
            why.starts_with("io_uring is not available here: io_uring_setup failed: "),
            "{why}"
        );
        assert!(why.contains("kernel.io_uring_disabled="), "{why}");
        assert!(!why.contains('\n'));

        let cx = Context::new(Config::default()).unwrap();
        let addr = "127.0.0.1:0".parse().unwrap();
        let listener = bind_tcp(addr, BindOptions::default()).unwrap();
        let err = socklab_uring::serve(listener, &cx, &Options::default()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::Unsupported);
        assert_eq!(err.to_string(), why);
        let socket = bind_udp(addr, BindOptions::default()).unwrap();
        let err = socklab_uring::serve_udp(socket, &cx, &Options::default()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::Unsupported);
    })
    .join()
    .unwrap();
}
