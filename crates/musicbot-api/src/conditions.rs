//! The vocabulary of a MusicBot's `status.conditions` and Events: condition types, their
//! statuses and the reasons the operator gives. Tools and tests read the same names.

pub use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

/// A closed set of CamelCase names, each spelled as its variant.
macro_rules! names {
    ($(#[$meta:meta])* pub enum $name:ident { $($(#[$vmeta:meta])* $variant:ident,)* }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name { $($(#[$vmeta])* $variant,)* }

        impl $name {
            pub const ALL: &[Self] = &[$(Self::$variant,)*];

            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => stringify!($variant),)* }
            }

            /// The name as it is written in a condition or Event.
            pub fn parse(name: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|n| n.as_str() == name)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl PartialEq<$name> for String {
            fn eq(&self, other: &$name) -> bool {
                self == other.as_str()
            }
        }

        impl PartialEq<$name> for str {
            fn eq(&self, other: &$name) -> bool {
                self == other.as_str()
            }
        }
    };
}

names! {
    /// The condition types the operator sets.
    pub enum ConditionType {
        /// Every shard is ready.
        Ready,
        /// The token Secret holds a bot token of this clientId.
        TokenResolved,
        /// The shards that answered `/status` are connected to the Discord gateway.
        GatewayConnected,
        /// The bot's slash commands are registered.
        CommandsDeployed,
        /// Only on MusicBots the MongoDB sync made: whether their record is current.
        Synced,
        /// The token has IDENTIFYs left above the bot's reserve (Discord allows 1,000 a day):
        /// False while the bot waits for Discord to refill them.
        IdentifiesAvailable,
    }
}

names! {
    /// `metav1.Condition`'s status.
    pub enum ConditionStatus {
        True,
        False,
        Unknown,
    }
}

impl From<Option<bool>> for ConditionStatus {
    fn from(known: Option<bool>) -> Self {
        match known {
            Some(true) => Self::True,
            Some(false) => Self::False,
            None => Self::Unknown,
        }
    }
}

names! {
    /// Reasons of conditions and Events.
    pub enum Reason {
        // TokenResolved
        TokenResolved,
        SecretNotFound,
        KeyNotFound,
        TokenEmpty,
        TokenMalformed,
        ClientIdMismatch,
        // Ready
        AllShardsReady,
        ShardsNotReady,
        Suspended,
        TokenNotResolved,
        /// `spec.pod.image` is not from a repository the operator allows: no pod is made.
        ImageNotAllowed,
        ImagePullFailed,
        CrashLoopBackOff,
        Unschedulable,
        ContainerConfigError,
        ContainerStartFailed,
        // GatewayConnected and CommandsDeployed
        NoReport,
        Connected,
        Disconnected,
        Deployed,
        NotDeployed,
        // Synced
        Synced,
        RecordInvalid,
        /// The record is gone or deactivated, but the sync holds that as a mass deletion.
        MassDeletionHeld,
        // IdentifiesAvailable (the held ones are also Ready's reasons, and Events)
        IdentifiesLeft,
        /// A pod has its reserve of identifies left and waits for Discord's reset itself.
        IdentifyReserveReached,
        /// A pod crash-looped with its reserve left: the operator keeps the pods stopped
        /// until Discord's reset.
        IdentifyHeld,
        // Events only
        Running,
        Degraded,
        Resumed,
        GatewayDisconnected,
        /// Discord's reset time has come: the operator starts the held bot again.
        IdentifyHoldEnded,
        Deleted,
        /// The stored object does not deserialize into a MusicBot of this operator.
        InvalidObject,
    }
}

impl Reason {
    /// Ready-condition reasons for pods that cannot run until something is fixed; each is
    /// announced once by a Warning Event of the same reason.
    pub const POD_PROBLEMS: [Reason; 5] = [
        Reason::ImagePullFailed,
        Reason::CrashLoopBackOff,
        Reason::Unschedulable,
        Reason::ContainerConfigError,
        Reason::ContainerStartFailed,
    ];

    pub fn is_pod_problem(self) -> bool {
        Self::POD_PROBLEMS.contains(&self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_spelled_as_their_variants_and_parse_back() {
        assert_eq!(ConditionType::GatewayConnected.as_str(), "GatewayConnected");
        assert_eq!(Reason::CrashLoopBackOff.to_string(), "CrashLoopBackOff");
        for r in Reason::ALL {
            assert_eq!(Reason::parse(r.as_str()), Some(*r));
        }
        assert_eq!(Reason::parse("NoSuchReason"), None);
        assert!(*"True" == ConditionStatus::True);
    }
}
