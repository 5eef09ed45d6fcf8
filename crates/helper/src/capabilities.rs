//! Declared capability sets that fail closed.
//!
//! Each helper declares one [`HelperCaps`]: the capabilities it is installed
//! with (`setcap …=p`, permitted set only) and the extras a root caller
//! keeps. Nothing else in a helper looks at the caller's uid to decide about
//! capabilities.
//!
//! - [`HelperCaps::restrict`] at start: ambient, inheritable and effective
//!   sets empty, the permitted set cut down to the declared one, the bounding
//!   set too when the process may shrink it (see below).
//! - [`HelperCaps::with_caps`] around a call: raise exactly what is asked
//!   (each must be declared and permitted, else an error naming it and the
//!   fix), run, then put back the effective set as it was before (so calls
//!   nest). If putting it back fails, the process aborts: it never goes on
//!   with a capability raised.
//!
//! **Threads.** Capabilities are per thread on Linux. `with_caps` changes the
//! calling thread's effective set only, and [`HelperCaps::restrict`] must run
//! before any thread starts (a new thread copies its creator's sets). A
//! thread started *inside* a `with_caps` call starts with the raised set and
//! nothing lowers it: start threads outside, and let each raise what it
//! needs itself (as `tupper-net`'s netns worker does).
//!
//! **Bounding set.** Dropping from the bounding set (`PR_CAPBSET_DROP`) needs
//! `CAP_SETPCAP` in the effective set. No helper is installed with it, so for
//! a non-root caller the bounding set stays as inherited; that is sound
//! because the bounding set only limits what an `execve` can add to the
//! permitted set, and no helper executes a program for a non-root caller
//! (`tupper-net` and the `tupper-ns` helper process never execute anything;
//! `tupper-storage` runs `mkfs.btrfs` for root only; the `tupper-ns`
//! container init, which does execute the container's command, reduces its
//! own bounding set and sets `no_new_privs` in its lock-down, holding
//! `CAP_SETPCAP` in its user namespace). When the permitted set does hold
//! `CAP_SETPCAP` (a root caller, or a setuid-root install), it is raised
//! briefly and every capability outside the kept set is dropped from the
//! bounding set, so a program root's helper runs (`mkfs.btrfs`) gets no more
//! than the helper holds.
//!
//! **`no_new_privs`.** Not set here: it is inherited by everything the
//! process starts and cannot be undone, so for `tupper-ns` it would decide
//! the container's exec policy, which belongs to the init's lock-down (it
//! sets it there today). For the other helpers it would add nothing the
//! above does not already give.

use std::ffi::OsString;
use std::io::{self, Write};

use caps::{CapSet, Capability, CapsHashSet};

use crate::hygiene::Caller;
use crate::Error;

/// What a helper may ever hold.
#[derive(Debug)]
pub struct HelperCaps {
    /// The binary's name, used in messages (`tupper-net`).
    pub helper: &'static str,
    /// Installed with `setcap <needed>=p`; the only capabilities a
    /// non-root caller's helper keeps.
    pub needed: &'static [Capability],
    /// Kept in addition when the caller's real uid is 0 (root already holds
    /// every capability; these are the ones its helper still needs).
    pub root_extra: &'static [Capability],
}

/// A capability set of the calling thread (the bounding set is only ever
/// dropped from, by number: [`CapSys::drop_bounding`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Set {
    Effective,
    Permitted,
    Inheritable,
    Ambient,
}

/// The capability system calls, as a seam: [`Kernel`] in production, a
/// fake in tests that checks the sequence without root.
pub trait CapSys {
    /// The calling thread's `set`.
    fn read(&self, set: Set) -> io::Result<CapsHashSet>;
    /// Make the calling thread's `set` exactly `value`.
    fn set(&self, set: Set, value: &CapsHashSet) -> io::Result<()>;
    /// `PR_CAPBSET_DROP` of capability number `index`. `Ok(false)` when the
    /// kernel knows no capability of that number (the end of the list).
    fn drop_bounding(&self, index: u8) -> io::Result<bool>;
    /// The process must not go on (capabilities could not be lowered): say
    /// why and end it. Never returns.
    fn fatal(&self, message: &str) -> !;
}

/// The real system calls, on the calling thread, through the `caps` crate.
#[derive(Debug, Clone, Copy, Default)]
pub struct Kernel;

fn caps_set(set: Set) -> CapSet {
    match set {
        Set::Effective => CapSet::Effective,
        Set::Permitted => CapSet::Permitted,
        Set::Inheritable => CapSet::Inheritable,
        Set::Ambient => CapSet::Ambient,
    }
}

fn ambient_supported() -> bool {
    caps::runtime::ambient_set_supported().is_ok()
}

impl CapSys for Kernel {
    fn read(&self, set: Set) -> io::Result<CapsHashSet> {
        // Kernels before 4.3 have no ambient set: it is empty.
        if set == Set::Ambient && !ambient_supported() {
            return Ok(CapsHashSet::new());
        }
        caps::read(None, caps_set(set)).map_err(|e| io::Error::other(e.to_string()))
    }

    fn set(&self, set: Set, value: &CapsHashSet) -> io::Result<()> {
        if set == Set::Ambient && value.is_empty() {
            if !ambient_supported() {
                return Ok(());
            }
            return caps::clear(None, CapSet::Ambient).map_err(|e| io::Error::other(e.to_string()));
        }
        caps::set(None, caps_set(set), value).map_err(|e| io::Error::other(e.to_string()))
    }

    fn drop_bounding(&self, index: u8) -> io::Result<bool> {
        // SAFETY: prctl with integer arguments.
        let rc = unsafe {
            libc::prctl(
                libc::PR_CAPBSET_DROP,
                libc::c_ulong::from(index),
                0 as libc::c_ulong,
                0 as libc::c_ulong,
                0 as libc::c_ulong,
            )
        };
        if rc == 0 {
            return Ok(true);
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EINVAL) {
            return Ok(false);
        }
        Err(e)
    }

    fn fatal(&self, message: &str) -> ! {
        // Nothing here may panic: stderr can be a closed pipe.
        let _ = writeln!(io::stderr(), "{message}");
        std::process::abort()
    }
}

/// `cap_net_admin`: the spelling of `setcap`, `getcap` and `capsh`.
pub fn cap_name(cap: Capability) -> String {
    cap.to_string().to_lowercase()
}

/// Whether a helper's arguments (without the program name) are exactly
/// `--print-caps`.
pub fn wants_print_caps<I: IntoIterator<Item = OsString>>(args: I) -> bool {
    let args: Vec<OsString> = args.into_iter().take(2).collect();
    args.len() == 1 && args[0] == "--print-caps"
}

impl HelperCaps {
    /// The argument of `setcap` the binary is installed with:
    /// `cap_chown,cap_dac_override=p` (needed capabilities, in declared
    /// order, permitted set only; root's extras are root's own).
    pub fn setcap(&self) -> String {
        let names: Vec<String> = self.needed.iter().map(|c| cap_name(*c)).collect();
        format!("{}=p", names.join(","))
    }

    /// With the single argument `--print-caps`, print [`HelperCaps::setcap`]
    /// and exit (0, or 1 when stdout cannot be written). Otherwise return.
    /// The helper's `main` calls this first ([`crate::start`] does); it is
    /// the one source of the capability list install, packaging and the
    /// README check read.
    pub fn print_caps_if_asked(&self) {
        if wants_print_caps(std::env::args_os().skip(1)) {
            let mut out = io::stdout().lock();
            let ok = writeln!(out, "{}", self.setcap())
                .and_then(|()| out.flush())
                .is_ok();
            std::process::exit(if ok { 0 } else { 1 });
        }
    }

    /// Everything this caller's helper may keep: [`HelperCaps::needed`],
    /// and [`HelperCaps::root_extra`] when the caller's real uid is 0. The
    /// one place a uid decides about capabilities.
    pub fn allowed(&self, caller: Caller) -> CapsHashSet {
        let mut set: CapsHashSet = self.needed.iter().copied().collect();
        if caller.uid == 0 {
            set.extend(self.root_extra.iter().copied());
        }
        set
    }

    /// Whether `cap` is declared at all (needed or root extra).
    pub fn declares(&self, cap: Capability) -> bool {
        self.needed.contains(&cap) || self.root_extra.contains(&cap)
    }

    /// At start, before any thread exists: see the module documentation.
    /// On error nothing is left effective (or the process aborts).
    pub fn restrict(&self, caller: Caller) -> Result<(), Error> {
        self.restrict_in(&Kernel, caller)
    }

    /// [`HelperCaps::restrict`] on any [`CapSys`].
    pub fn restrict_in<S: CapSys + ?Sized>(&self, sys: &S, caller: Caller) -> Result<(), Error> {
        let permitted = sys
            .read(Set::Permitted)
            .map_err(self.caps_err("read the permitted capabilities"))?;
        let keep: CapsHashSet = permitted
            .intersection(&self.allowed(caller))
            .copied()
            .collect();
        let done = self.restrict_steps(sys, &permitted, &keep);
        if done.is_err() {
            // Never leave anything effective behind a failed start.
            if let Err(e) = sys.set(Set::Effective, &CapsHashSet::new()) {
                sys.fatal(&format!(
                    "{}: cannot clear the effective capabilities ({e}); aborting",
                    self.helper
                ));
            }
        }
        done
    }

    fn restrict_steps<S: CapSys + ?Sized>(
        &self,
        sys: &S,
        permitted: &CapsHashSet,
        keep: &CapsHashSet,
    ) -> Result<(), Error> {
        let empty = CapsHashSet::new();
        sys.set(Set::Ambient, &empty)
            .map_err(self.caps_err("clear the ambient capabilities"))?;
        sys.set(Set::Inheritable, &empty)
            .map_err(self.caps_err("clear the inheritable capabilities"))?;
        if permitted.contains(&Capability::CAP_SETPCAP) {
            let setpcap: CapsHashSet = [Capability::CAP_SETPCAP].into_iter().collect();
            sys.set(Set::Effective, &setpcap)
                .map_err(self.caps_err("raise cap_setpcap to shrink the bounding set"))?;
            // By number, so capabilities newer than the `caps` crate go too.
            for index in 0..=63u8 {
                if keep.iter().any(|c| c.index() == index) {
                    continue;
                }
                match sys.drop_bounding(index) {
                    Ok(true) => {}
                    Ok(false) => break,
                    Err(e) => return Err(self.caps_err("shrink the bounding set")(e)),
                }
            }
        }
        sys.set(Set::Effective, &empty)
            .map_err(self.caps_err("clear the effective capabilities"))?;
        sys.set(Set::Permitted, keep)
            .map_err(self.caps_err("drop the capabilities this helper does not need"))?;
        // The kernel said yes; check it did what we asked.
        let read = |set, what| sys.read(set).map_err(self.caps_err(what));
        let took = read(Set::Permitted, "read the permitted capabilities")? == *keep
            && read(Set::Effective, "read the effective capabilities")?.is_empty()
            && read(Set::Inheritable, "read the inheritable capabilities")?.is_empty()
            && read(Set::Ambient, "read the ambient capabilities")?.is_empty();
        if !took {
            return Err(self.caps_err("restrict the capability sets")(
                io::Error::other("the sets differ from what was set"),
            ));
        }
        Ok(())
    }

    /// Run `f` with `wanted` raised in the calling thread's effective set,
    /// then restore that set as it was before (whatever `f` returned, and
    /// when `f` unwinds). Each capability must be declared and permitted:
    /// else nothing is raised, `f` does not run, and the error names the
    /// capability and the fix. If the set cannot be restored, the process
    /// aborts.
    pub fn with_caps<T, E: From<Error>>(
        &self,
        wanted: &[Capability],
        f: impl FnOnce() -> Result<T, E>,
    ) -> Result<T, E> {
        self.with_caps_in(&Kernel, wanted, f)
    }

    /// [`HelperCaps::with_caps`] on any [`CapSys`].
    pub fn with_caps_in<S: CapSys + ?Sized, T, E: From<Error>>(
        &self,
        sys: &S,
        wanted: &[Capability],
        f: impl FnOnce() -> Result<T, E>,
    ) -> Result<T, E> {
        if let Some(cap) = wanted.iter().find(|c| !self.declares(**c)) {
            return Err(Error::Undeclared {
                helper: self.helper,
                cap: cap_name(*cap),
            }
            .into());
        }
        let before = sys
            .read(Set::Effective)
            .map_err(self.caps_err("read the effective capabilities"))?;
        let permitted = sys
            .read(Set::Permitted)
            .map_err(self.caps_err("read the permitted capabilities"))?;
        let missing: Vec<Capability> = wanted
            .iter()
            .copied()
            .filter(|c| !permitted.contains(c))
            .collect();
        if !missing.is_empty() {
            return Err(self.missing(&missing).into());
        }
        let mut raised = before.clone();
        raised.extend(wanted.iter().copied());
        let lower = Lower {
            spec: self,
            sys,
            before,
        };
        if let Err(e) = sys.set(Set::Effective, &raised) {
            // capset is all or nothing, but make sure: `lower` puts the
            // previous set back (or aborts) when it goes out of scope.
            drop(lower);
            return Err(self.caps_err("raise capabilities")(e).into());
        }
        let out = f();
        drop(lower);
        out
    }

    fn missing(&self, caps: &[Capability]) -> Error {
        let names: Vec<String> = caps.iter().map(|c| cap_name(*c)).collect();
        let fix = if caps.iter().any(|c| self.needed.contains(c)) {
            format!(
                "install it with `setcap {}` on the {} binary (packaging/install.sh does)",
                self.setcap(),
                self.helper
            )
        } else {
            "it is used for root callers only, and this process does not hold it \
             (root's own capabilities lack it here)"
                .to_string()
        };
        Error::MissingCapability {
            helper: self.helper,
            caps: names.join(", "),
            fix,
        }
    }

    fn caps_err(&self, what: &'static str) -> impl FnOnce(io::Error) -> Error {
        let helper = self.helper;
        move |source| Error::Capabilities {
            helper,
            what,
            source,
        }
    }
}

/// Puts the effective set back when dropped; aborts if it cannot.
struct Lower<'a, S: CapSys + ?Sized> {
    spec: &'a HelperCaps,
    sys: &'a S,
    before: CapsHashSet,
}

impl<S: CapSys + ?Sized> Drop for Lower<'_, S> {
    fn drop(&mut self) {
        if let Err(e) = self.sys.set(Set::Effective, &self.before) {
            self.sys.fatal(&format!(
                "{}: cannot lower capabilities after a call ({e}); aborting rather than \
                 going on with them raised",
                self.spec.helper
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::{Cell, RefCell};
    use std::collections::HashMap;
    use std::panic::{catch_unwind, AssertUnwindSafe};

    use caps::Capability::*;

    use super::*;

    static SPEC: HelperCaps = HelperCaps {
        helper: "tupper-test",
        needed: &[CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_FOWNER],
        root_extra: &[CAP_SYS_PTRACE],
    };

    const USER: Caller = Caller {
        uid: 1000,
        gid: 1000,
    };
    const ROOT: Caller = Caller { uid: 0, gid: 0 };

    /// The last capability number the fake kernel knows.
    const LAST_CAP: u8 = 40;

    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Call {
        Set(Set, Vec<u8>),
        DropBounding(u8),
        Fatal(String),
    }

    /// A thread's capability state with the kernel's rules for the calls
    /// the runtime makes, a log of every change, and injectable failures.
    struct Fake {
        sets: RefCell<HashMap<Set, CapsHashSet>>,
        bounding: RefCell<Vec<u8>>,
        log: RefCell<Vec<Call>>,
        /// Fail the n-th (1-based) `set` of this set.
        fail_set: Option<(Set, usize)>,
        set_count: RefCell<HashMap<Set, usize>>,
        fail_drop: bool,
        ran: Cell<bool>,
    }

    fn set_of(caps: &[Capability]) -> CapsHashSet {
        caps.iter().copied().collect()
    }

    fn indices(set: &CapsHashSet) -> Vec<u8> {
        let mut v: Vec<u8> = set.iter().map(|c| c.index()).collect();
        v.sort_unstable();
        v
    }

    fn eperm() -> io::Error {
        io::Error::from_raw_os_error(libc::EPERM)
    }

    impl Fake {
        fn new(permitted: &[Capability], effective: &[Capability]) -> Fake {
            let mut sets = HashMap::new();
            sets.insert(Set::Permitted, set_of(permitted));
            sets.insert(Set::Effective, set_of(effective));
            sets.insert(Set::Inheritable, CapsHashSet::new());
            sets.insert(Set::Ambient, CapsHashSet::new());
            Fake {
                sets: RefCell::new(sets),
                bounding: RefCell::new((0..=LAST_CAP).collect()),
                log: RefCell::new(Vec::new()),
                fail_set: None,
                set_count: RefCell::new(HashMap::new()),
                fail_drop: false,
                ran: Cell::new(false),
            }
        }

        fn with_inherited(self, set: Set, caps: &[Capability]) -> Fake {
            self.sets.borrow_mut().insert(set, set_of(caps));
            self
        }

        fn get(&self, set: Set) -> CapsHashSet {
            self.sets.borrow()[&set].clone()
        }

        fn calls(&self) -> Vec<Call> {
            self.log.borrow().clone()
        }

        fn effective_sets(&self) -> Vec<Vec<u8>> {
            self.calls()
                .into_iter()
                .filter_map(|c| match c {
                    Call::Set(Set::Effective, v) => Some(v),
                    _ => None,
                })
                .collect()
        }
    }

    impl CapSys for Fake {
        fn read(&self, set: Set) -> io::Result<CapsHashSet> {
            Ok(self.get(set))
        }

        fn set(&self, set: Set, value: &CapsHashSet) -> io::Result<()> {
            let n = {
                let mut counts = self.set_count.borrow_mut();
                let n = counts.entry(set).or_insert(0);
                *n += 1;
                *n
            };
            if self.fail_set == Some((set, n)) {
                return Err(eperm());
            }
            let permitted = self.get(Set::Permitted);
            let ok = match set {
                Set::Effective => value.is_subset(&permitted),
                Set::Permitted => {
                    value.is_subset(&permitted) && self.get(Set::Effective).is_subset(value)
                }
                Set::Inheritable => value.is_subset(&self.get(Set::Inheritable)),
                Set::Ambient => {
                    value.is_subset(&permitted) && value.is_subset(&self.get(Set::Inheritable))
                }
            };
            if !ok {
                return Err(eperm());
            }
            self.sets.borrow_mut().insert(set, value.clone());
            self.log.borrow_mut().push(Call::Set(set, indices(value)));
            Ok(())
        }

        fn drop_bounding(&self, index: u8) -> io::Result<bool> {
            if index > LAST_CAP {
                return Ok(false);
            }
            if self.fail_drop || !self.get(Set::Effective).contains(&CAP_SETPCAP) {
                return Err(eperm());
            }
            self.bounding.borrow_mut().retain(|i| *i != index);
            self.log.borrow_mut().push(Call::DropBounding(index));
            Ok(true)
        }

        fn fatal(&self, message: &str) -> ! {
            self.log.borrow_mut().push(Call::Fatal(message.to_string()));
            panic!("fatal: {message}");
        }
    }

    fn all_caps() -> Vec<Capability> {
        caps::all()
            .into_iter()
            .filter(|c| c.index() <= LAST_CAP)
            .collect()
    }

    #[test]
    fn setcap_string_is_the_needed_set_in_order_permitted_only() {
        assert_eq!(SPEC.setcap(), "cap_chown,cap_dac_override,cap_fowner=p");
        assert_eq!(cap_name(CAP_NET_ADMIN), "cap_net_admin");
    }

    #[test]
    fn print_caps_only_for_exactly_that_argument() {
        let args = |a: &[&str]| a.iter().map(OsString::from).collect::<Vec<_>>();
        assert!(wants_print_caps(args(&["--print-caps"])));
        assert!(!wants_print_caps(args(&[])));
        assert!(!wants_print_caps(args(&["--print-caps", "x"])));
        assert!(!wants_print_caps(args(&["x", "--print-caps"])));
        assert!(!wants_print_caps(args(&["--print-cap"])));
    }

    #[test]
    fn restrict_keeps_the_declared_set_and_empties_the_others() {
        // File capabilities =p plus one too many, and junk a caller left in
        // the inheritable and ambient sets.
        let fake = Fake::new(&[CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_FOWNER, CAP_NET_RAW], &[])
            .with_inherited(Set::Inheritable, &[CAP_CHOWN])
            .with_inherited(Set::Ambient, &[CAP_CHOWN]);
        SPEC.restrict_in(&fake, USER).unwrap();
        assert_eq!(
            fake.get(Set::Permitted),
            set_of(&[CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_FOWNER])
        );
        assert!(fake.get(Set::Effective).is_empty());
        assert!(fake.get(Set::Inheritable).is_empty());
        assert!(fake.get(Set::Ambient).is_empty());
        // Without CAP_SETPCAP the bounding set is left alone.
        assert!(!fake
            .calls()
            .iter()
            .any(|c| matches!(c, Call::DropBounding(_))));
        assert_eq!(fake.bounding.borrow().len(), usize::from(LAST_CAP) + 1);
    }

    #[test]
    fn root_extras_apply_to_uid_0_only() {
        // The same full permitted set (root, or a setuid-root install).
        let user = Fake::new(&all_caps(), &all_caps());
        SPEC.restrict_in(&user, USER).unwrap();
        assert_eq!(
            user.get(Set::Permitted),
            set_of(&[CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_FOWNER])
        );
        let root = Fake::new(&all_caps(), &all_caps());
        SPEC.restrict_in(&root, ROOT).unwrap();
        assert_eq!(
            root.get(Set::Permitted),
            set_of(&[CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_FOWNER, CAP_SYS_PTRACE])
        );
        assert!(root.get(Set::Effective).is_empty());
        // A root extra is then refused for the user, with the reason.
        let err = SPEC
            .with_caps_in(&user, &[CAP_SYS_PTRACE], || Ok::<_, Error>(()))
            .unwrap_err();
        assert!(matches!(err, Error::MissingCapability { .. }), "{err}");
        assert!(err.to_string().contains("root callers only"), "{err}");
        assert!(SPEC
            .with_caps_in(&root, &[CAP_SYS_PTRACE], || Ok::<_, Error>(()))
            .is_ok());
    }

    #[test]
    fn restrict_shrinks_the_bounding_set_when_it_holds_setpcap() {
        let root = Fake::new(&all_caps(), &all_caps());
        SPEC.restrict_in(&root, ROOT).unwrap();
        let mut kept = indices(&set_of(&[
            CAP_CHOWN,
            CAP_DAC_OVERRIDE,
            CAP_FOWNER,
            CAP_SYS_PTRACE,
        ]));
        kept.sort_unstable();
        assert_eq!(*root.bounding.borrow(), kept);
        // CAP_SETPCAP was effective for the drops only, then nothing is.
        assert!(root.get(Set::Effective).is_empty());
        assert!(!root.get(Set::Permitted).contains(&CAP_SETPCAP));
    }

    #[test]
    fn restrict_fails_closed_when_the_bounding_set_cannot_shrink() {
        let mut root = Fake::new(&all_caps(), &all_caps());
        root.fail_drop = true;
        let err = SPEC.restrict_in(&root, ROOT).unwrap_err();
        assert!(err.to_string().contains("bounding set"), "{err}");
        assert!(root.get(Set::Effective).is_empty());
    }

    #[test]
    fn with_caps_raises_exactly_what_is_asked_and_restores() {
        let fake = Fake::new(&[CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_FOWNER], &[]);
        let inside = SPEC
            .with_caps_in(&fake, &[CAP_FOWNER], || {
                Ok::<_, Error>(fake.get(Set::Effective))
            })
            .unwrap();
        assert_eq!(inside, set_of(&[CAP_FOWNER]));
        assert!(fake.get(Set::Effective).is_empty());
        assert_eq!(
            fake.effective_sets(),
            vec![indices(&set_of(&[CAP_FOWNER])), vec![]]
        );
    }

    #[test]
    fn with_caps_restores_the_previous_set_so_calls_nest() {
        // Something already effective before the outer call stays so.
        let fake = Fake::new(&[CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_FOWNER], &[CAP_CHOWN]);
        let (inner, between) = SPEC
            .with_caps_in(&fake, &[CAP_DAC_OVERRIDE], || {
                let inner = SPEC.with_caps_in(&fake, &[CAP_FOWNER], || {
                    Ok::<_, Error>(fake.get(Set::Effective))
                })?;
                Ok::<_, Error>((inner, fake.get(Set::Effective)))
            })
            .unwrap();
        assert_eq!(inner, set_of(&[CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_FOWNER]));
        assert_eq!(between, set_of(&[CAP_CHOWN, CAP_DAC_OVERRIDE]));
        assert_eq!(fake.get(Set::Effective), set_of(&[CAP_CHOWN]));
    }

    #[test]
    fn errors_and_panics_of_the_call_still_lower() {
        let fake = Fake::new(&[CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_FOWNER], &[]);
        let r: Result<(), Error> = SPEC.with_caps_in(&fake, &[CAP_CHOWN], || {
            Err(Error::StartUp("the call failed".into()))
        });
        assert!(matches!(r, Err(Error::StartUp(_))));
        assert!(fake.get(Set::Effective).is_empty());
        let unwound = catch_unwind(AssertUnwindSafe(|| {
            SPEC.with_caps_in(&fake, &[CAP_CHOWN], || -> Result<(), Error> {
                panic!("the call panicked")
            })
        }));
        assert!(unwound.is_err());
        assert!(fake.get(Set::Effective).is_empty());
    }

    #[test]
    fn a_failed_lowering_aborts() {
        let mut fake = Fake::new(&[CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_FOWNER], &[]);
        // The first set of the effective set raises, the second lowers.
        fake.fail_set = Some((Set::Effective, 2));
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            SPEC.with_caps_in(&fake, &[CAP_CHOWN], || {
                fake.ran.set(true);
                Ok::<_, Error>(())
            })
        }));
        assert!(fake.ran.get());
        assert!(outcome.is_err(), "with_caps returned {outcome:?}");
        let last = fake.calls().last().cloned();
        match last {
            Some(Call::Fatal(m)) => {
                assert!(m.contains("cannot lower capabilities"), "{m}");
                assert!(m.starts_with("tupper-test: "), "{m}");
            }
            other => panic!("expected the process to be ended, last call {other:?}"),
        }
    }

    #[test]
    fn a_missing_capability_names_it_and_the_setcap_fix() {
        let fake = Fake::new(&[CAP_CHOWN], &[]);
        let err = SPEC
            .with_caps_in(&fake, &[CAP_CHOWN, CAP_FOWNER], || {
                fake.ran.set(true);
                Ok::<_, Error>(())
            })
            .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("tupper-test lacks cap_fowner"), "{msg}");
        assert!(!msg.contains("cap_chown;"), "{msg}");
        assert!(
            msg.contains("setcap cap_chown,cap_dac_override,cap_fowner=p"),
            "{msg}"
        );
        assert!(!fake.ran.get());
        assert!(fake.calls().is_empty(), "{:?}", fake.calls());
    }

    #[test]
    fn an_undeclared_capability_is_refused_even_when_held() {
        let fake = Fake::new(&all_caps(), &[]);
        let err = SPEC
            .with_caps_in(&fake, &[CAP_SYS_ADMIN], || {
                fake.ran.set(true);
                Ok::<_, Error>(())
            })
            .unwrap_err();
        assert!(matches!(err, Error::Undeclared { .. }), "{err}");
        assert!(err.to_string().contains("cap_sys_admin"), "{err}");
        assert!(!fake.ran.get());
        assert!(fake.calls().is_empty());
    }

    #[test]
    fn a_failed_raise_runs_nothing() {
        let mut fake = Fake::new(&[CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_FOWNER], &[]);
        fake.fail_set = Some((Set::Effective, 1));
        let err = SPEC
            .with_caps_in(&fake, &[CAP_CHOWN], || {
                fake.ran.set(true);
                Ok::<_, Error>(())
            })
            .unwrap_err();
        assert!(err.to_string().contains("raise capabilities"), "{err}");
        assert!(!fake.ran.get());
        assert!(fake.get(Set::Effective).is_empty());
    }

    /// The real system calls on a thread of its own (capabilities are per
    /// thread): whatever this process holds, the sequence ends where it began.
    #[test]
    fn kernel_with_caps_restores_this_threads_set() {
        std::thread::spawn(|| {
            let permitted = Kernel.read(Set::Permitted).unwrap();
            Kernel.set(Set::Effective, &CapsHashSet::new()).unwrap();
            let r = SPEC.with_caps(&[CAP_FOWNER], || {
                Ok::<_, Error>(Kernel.read(Set::Effective).unwrap())
            });
            if permitted.contains(&CAP_FOWNER) {
                assert_eq!(r.unwrap(), set_of(&[CAP_FOWNER]));
            } else {
                assert!(matches!(r, Err(Error::MissingCapability { .. })));
            }
            assert!(Kernel.read(Set::Effective).unwrap().is_empty());
        })
        .join()
        .unwrap();
    }
}
