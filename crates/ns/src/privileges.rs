//! Capabilities of the helper process: keep only what `tupper-ns` needs in the
//! permitted set, and make one effective only around the call that needs it.

use caps::{CapSet, Capability};
use proto::helper::Caller;

use crate::error::Error;

/// Everything `tupper-ns` may ever use:
/// - `CAP_SETUID` / `CAP_SETGID`: write the init's uid/gid maps onto the caller's
///   subordinate range (what `newuidmap`/`newgidmap` do);
/// - `CAP_DAC_READ_SEARCH`: open the caller's container root inside the root-only store.
pub const NEEDED: [Capability; 3] = [
    Capability::CAP_SETUID,
    Capability::CAP_SETGID,
    Capability::CAP_DAC_READ_SEARCH,
];

fn sys(what: &str) -> impl FnOnce(caps::errors::CapsError) -> Error + '_ {
    move |e| Error::Sys {
        what: what.to_string(),
        source: std::io::Error::other(e.to_string()),
    }
}

/// Drop every capability outside [`NEEDED`] from the permitted set and empty
/// the effective, inheritable and ambient sets.
///
/// Root (real uid 0, for development and for root callers without a
/// subordinate range, which run without a user namespace) keeps its permitted
/// set: creating namespaces without a user namespace needs `CAP_SYS_ADMIN`.
pub fn restrict(caller: Caller) -> Result<(), Error> {
    caps::clear(None, CapSet::Ambient).map_err(sys("clear ambient capabilities"))?;
    caps::clear(None, CapSet::Effective).map_err(sys("clear effective capabilities"))?;
    caps::clear(None, CapSet::Inheritable).map_err(sys("clear inheritable capabilities"))?;
    if caller.uid != 0 {
        let keep: caps::CapsHashSet = caps::read(None, CapSet::Permitted)
            .map_err(sys("read permitted capabilities"))?
            .into_iter()
            .filter(|c| NEEDED.contains(c))
            .collect();
        caps::set(None, CapSet::Permitted, &keep).map_err(sys("drop capabilities"))?;
    }
    Ok(())
}

/// Run `f` with `needed` raised in the effective set, lowering them afterwards.
pub fn with_caps<T>(
    needed: &[Capability],
    f: impl FnOnce() -> Result<T, Error>,
) -> Result<T, Error> {
    for cap in needed {
        if caps::raise(None, CapSet::Effective, *cap).is_err() {
            let _ = caps::clear(None, CapSet::Effective);
            return Err(Error::MissingCapability(cap.to_string().to_lowercase()));
        }
    }
    let result = f();
    caps::clear(None, CapSet::Effective).map_err(sys("lower effective capabilities"))?;
    result
}

/// Make every permitted capability effective (the container init, which
/// holds capabilities only inside its own user namespace, or root).
pub fn raise_all() -> Result<(), Error> {
    let permitted =
        caps::read(None, CapSet::Permitted).map_err(sys("read permitted capabilities"))?;
    caps::set(None, CapSet::Effective, &permitted).map_err(sys("raise capabilities"))
}
