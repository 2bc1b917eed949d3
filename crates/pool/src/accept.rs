//! The accept-dispatch variant ([`Dispatch::Accept`](crate::Dispatch::Accept),
//! Stevens' serv07): no channel at all. Every worker runs the iterative server's
//! loop on its own `try_clone()` of the listener (a `dup()`: one socket, several
//! descriptors), and the kernel wakes exactly one blocked `accept()` per new
//! connection.

use std::io;
use std::net::TcpListener;

use socklab_server_kit::{Clients, Context};

use crate::workers::Workers;
use crate::MODEL;

/// Every worker accepts on its own descriptor for the listener.
pub(crate) fn serve(listener: TcpListener, cx: &Context, workers: usize) -> io::Result<()> {
    let pool = Workers::start(workers, cx, |_| {
        // `try_clone()` is `dup()`: another descriptor for the *same* socket, so
        // all workers wait in one accept queue (and share its SO_RCVTIMEO).
        let listener = listener.try_clone()?;
        let cx = cx.clone();
        Ok(move || {
            // The iterative server, run by N threads.
            for client in Clients::new(&listener, &cx) {
                client.serve(&cx, MODEL);
            }
            Ok(())
        })
    })?;
    drop(listener);
    pool.wait_for_shutdown(cx);
    pool.finish(cx)
}
