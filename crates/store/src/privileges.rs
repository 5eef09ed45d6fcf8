//! Capabilities: keep only the ones this helper needs, in the permitted set,
//! and raise them into the effective set only around the calls that need them.

use caps::{CapSet, Capability};

use crate::error::{Error, Result};

/// Everything `tupper-storage` may ever use (the README's capability table):
/// mount + loop setup + subvolume destroy, working in the root-only store,
/// shifting ids, chmod/utimes on files owned by container ids, keeping
/// setgid bits on files of foreign groups.
pub const NEEDED: [Capability; 5] = [
    Capability::CAP_SYS_ADMIN,
    Capability::CAP_DAC_OVERRIDE,
    Capability::CAP_CHOWN,
    Capability::CAP_FOWNER,
    Capability::CAP_FSETID,
];

/// Working in the store: creating, opening and removing things in root-owned
/// 0700 directories and in trees owned by container ids.
pub const STORE: &[Capability] = &[Capability::CAP_DAC_OVERRIDE, Capability::CAP_FOWNER];

/// Writing image entries: create, chown to the shifted ids, chmod with
/// setuid/setgid bits, set times.
pub const EXTRACT: &[Capability] = &[
    Capability::CAP_DAC_OVERRIDE,
    Capability::CAP_CHOWN,
    Capability::CAP_FOWNER,
    Capability::CAP_FSETID,
];

/// Creating store-level directories and files owned by root.
pub const STORE_CREATE: &[Capability] = &[
    Capability::CAP_DAC_OVERRIDE,
    Capability::CAP_CHOWN,
    Capability::CAP_FOWNER,
];

/// mount(2), loop device setup, subvolume destruction.
pub const ADMIN: &[Capability] = &[Capability::CAP_SYS_ADMIN, Capability::CAP_DAC_OVERRIDE];

fn caps_err(what: &str) -> impl FnOnce(caps::errors::CapsError) -> Error + '_ {
    move |e| Error::Other {
        what: what.to_string(),
        why: e.to_string(),
    }
}

/// Drop every capability not in [`NEEDED`] from the permitted set, clear the
/// inheritable, ambient and effective sets. Nothing is ever put back into the
/// inheritable or ambient sets: no program this helper runs gets any of its
/// capabilities. Works both for a binary with file
/// capabilities (`=p`) run by a user and for root running it without them.
pub fn restrict() -> Result<()> {
    // Ambient may be unsupported on very old kernels; nothing to clear then.
    let _ = caps::clear(None, CapSet::Ambient);
    caps::clear(None, CapSet::Inheritable)
        .map_err(caps_err("cannot clear inheritable capabilities"))?;
    caps::clear(None, CapSet::Effective)
        .map_err(caps_err("cannot clear effective capabilities"))?;
    let permitted =
        caps::read(None, CapSet::Permitted).map_err(caps_err("cannot read capabilities"))?;
    let keep: caps::CapsHashSet = permitted
        .into_iter()
        .filter(|c| NEEDED.contains(c))
        .collect();
    caps::set(None, CapSet::Permitted, &keep).map_err(caps_err("cannot drop capabilities"))?;
    Ok(())
}

/// Run `f` with `wanted` raised in the effective set, and lower them again
/// afterwards whatever `f` returned. Capabilities that are not permitted are
/// skipped: the call then fails with the kernel's EPERM, which is the honest
/// answer.
pub fn with_caps<T>(wanted: &[Capability], f: impl FnOnce() -> Result<T>) -> Result<T> {
    let permitted =
        caps::read(None, CapSet::Permitted).map_err(caps_err("cannot read capabilities"))?;
    let before =
        caps::read(None, CapSet::Effective).map_err(caps_err("cannot read capabilities"))?;
    let mut raised = before.clone();
    raised.extend(wanted.iter().copied().filter(|c| permitted.contains(c)));
    caps::set(None, CapSet::Effective, &raised).map_err(caps_err("cannot raise capabilities"))?;
    let out = f();
    // Back to exactly what was effective before (nothing, outside nesting).
    let lowered = caps::set(None, CapSet::Effective, &before);
    match (out, lowered) {
        (Ok(_), Err(e)) => Err(caps_err("cannot lower capabilities")(e)),
        (out, _) => out,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn with_caps_restores_the_effective_set() {
        let before = caps::read(None, CapSet::Effective).unwrap();
        let permitted = caps::read(None, CapSet::Permitted).unwrap();
        let inside = with_caps(&[Capability::CAP_FOWNER], || {
            Ok(caps::read(None, CapSet::Effective).unwrap())
        })
        .unwrap();
        assert_eq!(
            inside.contains(&Capability::CAP_FOWNER),
            permitted.contains(&Capability::CAP_FOWNER)
        );
        assert_eq!(caps::read(None, CapSet::Effective).unwrap(), before);
        // Errors pass through and still restore.
        let r: Result<()> = with_caps(STORE, || Err(Error::NotFound("x".into())));
        assert!(matches!(r, Err(Error::NotFound(_))));
        assert_eq!(caps::read(None, CapSet::Effective).unwrap(), before);
    }
}
