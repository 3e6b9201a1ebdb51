//! Optional features a backend offers, as CRI's `Status` reports them.

/// What a backend can do beyond the required verbs. Each flag is true only when the
/// backend does it on this host (kernel and filesystems included), so `Status` can
/// report it truthfully and critest/kubelet rely on it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Features {
    /// Bind mounts made read-only with every mount below them (`recursive_read_only`).
    pub recursive_read_only_mounts: bool,
    /// Pod-level user namespaces (`userns_options` mode `POD`), with the rootfs
    /// usable by the mapped root.
    pub user_namespaces: bool,
    /// The `Strict` supplemental groups policy, and the `user` a container runs as
    /// reported by `ContainerStatus`.
    pub supplemental_groups_policy: bool,
}

impl Features {
    /// The features both `self` and `other` offer.
    pub fn common(self, other: Features) -> Features {
        Features {
            recursive_read_only_mounts: self.recursive_read_only_mounts
                && other.recursive_read_only_mounts,
            user_namespaces: self.user_namespaces && other.user_namespaces,
            supplemental_groups_policy: self.supplemental_groups_policy
                && other.supplemental_groups_policy,
        }
    }

    /// Every feature on.
    pub fn all() -> Features {
        Features {
            recursive_read_only_mounts: true,
            user_namespaces: true,
            supplemental_groups_policy: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_features_are_those_both_offer() {
        let a = Features {
            recursive_read_only_mounts: true,
            user_namespaces: true,
            supplemental_groups_policy: false,
        };
        let b = Features {
            recursive_read_only_mounts: true,
            user_namespaces: false,
            supplemental_groups_policy: true,
        };
        assert_eq!(
            a.common(b),
            Features {
                recursive_read_only_mounts: true,
                ..Features::default()
            }
        );
        assert_eq!(a.common(Features::all()), a);
        assert_eq!(
            Features::all().common(Features::default()),
            Features::default()
        );
    }
}
