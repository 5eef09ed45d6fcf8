//! Ownership shifting: container root onto the caller, container ids
//! 1..65535 onto the caller's subordinate range.

use tupper_config::subid::{IdMapping, CONTAINER_IDS};

use crate::error::Error;

#[derive(Debug, Clone, Copy)]
pub struct Shift {
    /// `None` for root without a subordinate range: ids stay as they are.
    pub mapping: Option<IdMapping>,
}

impl Shift {
    /// The caller's shift, and how many bytes one stream of theirs may write
    /// (`import_size` in the policy).
    pub fn and_limit_for(
        caller: proto::Caller,
    ) -> Result<(Shift, tupper_config::policy::Limit<u64>), Error> {
        let shift = Shift {
            mapping: tupper_config::subid::mapping_for(caller)?,
        };
        let limit = tupper_config::policy::Policy::load()?
            .limits_for_current(caller)
            .import_size;
        Ok((shift, limit))
    }

    /// Host (uid, gid) for an entry owned by container (uid, gid).
    pub fn host_ids(&self, entry: &str, uid: u64, gid: u64) -> Result<(u32, u32), Error> {
        let outside = |what: &str, id: u64| {
            Error::Unsafe(format!(
                "tarball entry {entry:?} is owned by {what} {id}, outside the container's 0..{}",
                CONTAINER_IDS - 1
            ))
        };
        if uid >= CONTAINER_IDS as u64 {
            return Err(outside("uid", uid));
        }
        if gid >= CONTAINER_IDS as u64 {
            return Err(outside("gid", gid));
        }
        match self.mapping {
            None => Ok((uid as u32, gid as u32)),
            Some(m) => Ok((
                m.host_uid(uid).ok_or_else(|| outside("uid", uid))?,
                m.host_gid(gid).ok_or_else(|| outside("gid", gid))?,
            )),
        }
    }
}

impl Shift {
    /// Host uid of container uid `id` for something other than ownership;
    /// `what` says what carries the id ("an ACL entry for uid").
    pub fn host_uid(&self, entry: &str, id: u64, what: &str) -> Result<u32, Error> {
        self.one(entry, id, what, |m, id| m.host_uid(id))
    }

    pub fn host_gid(&self, entry: &str, id: u64, what: &str) -> Result<u32, Error> {
        self.one(entry, id, what, |m, id| m.host_gid(id))
    }

    /// Host uid of container root: the caller, or 0 for root without a
    /// mapping. File capabilities are written with this root id.
    pub fn root_uid(&self) -> u32 {
        self.mapping.and_then(|m| m.host_uid(0)).unwrap_or(0)
    }

    fn one(
        &self,
        entry: &str,
        id: u64,
        what: &str,
        map: impl Fn(&IdMapping, u64) -> Option<u32>,
    ) -> Result<u32, Error> {
        let outside = || {
            Error::Unsafe(format!(
                "tarball entry {entry:?} has {what} {id}, outside the container's 0..{}",
                CONTAINER_IDS - 1
            ))
        };
        if id >= CONTAINER_IDS as u64 {
            return Err(outside());
        }
        match &self.mapping {
            None => Ok(id as u32),
            Some(m) => map(m, id).ok_or_else(outside),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shifted_onto_the_range() {
        let s = Shift {
            mapping: Some(IdMapping {
                caller_uid: 1000,
                caller_gid: 1001,
                uid_base: 100000,
                gid_base: 200000,
            }),
        };
        assert_eq!(s.host_ids("a", 0, 0).unwrap(), (1000, 1001));
        assert_eq!(s.host_ids("a", 65535, 5).unwrap(), (165534, 200004));
        let e = s.host_ids("etc/x", 70000, 0).unwrap_err();
        assert_eq!(
            e.to_string(),
            "tarball entry \"etc/x\" is owned by uid 70000, outside the container's 0..65535"
        );
        assert!(s.host_ids("a", 0, 65536).is_err());
    }

    #[test]
    fn root_without_range_is_unshifted() {
        let s = Shift { mapping: None };
        assert_eq!(s.host_ids("a", 0, 0).unwrap(), (0, 0));
        assert_eq!(s.host_ids("a", 1000, 50).unwrap(), (1000, 50));
        assert!(s.host_ids("a", 70000, 0).is_err());
    }
}
