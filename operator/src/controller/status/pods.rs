//! What keeps a bot's pods from running, read from the kubelet's and scheduler's reports.

use k8s_openapi::api::core::v1::{ContainerStateTerminated, ContainerStatus, Pod};
use musicbot_api::conditions::Reason;

/// Something that keeps a bot pod from running, as the kubelet or scheduler wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct PodProblem {
    pub pod: String,
    pub reason: Reason,
    pub message: String,
}

/// Longest piece of a kubelet or bot message quoted in a condition.
pub(super) const QUOTE_LIMIT: usize = 300;

pub(super) fn clip(text: &str) -> String {
    let text = text.trim();
    match text.char_indices().nth(QUOTE_LIMIT) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

/// The problems of `pods`, at most one per pod, in pod-name order. Pods being deleted are
/// left out: their replacement is what counts.
///
/// `crash_looping` says the bot was last seen in `CrashLoopBackOff`: between two back-offs
/// the kubelet runs the container again (and then reports it terminated), so a restarted
/// container that is not ready yet still counts as crash-looping instead of the bot
/// flapping to `Pending` and back, with a new Event each round.
pub(super) fn pod_problems(pods: &[Pod], crash_looping: bool) -> Vec<PodProblem> {
    let mut out: Vec<PodProblem> = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| {
            let name = p.metadata.name.clone().unwrap_or_default();
            let status = p.status.as_ref()?;
            let problem = |reason, message: String| Some(PodProblem { pod: name.clone(), reason, message });
            let containers =
                status.init_container_statuses.iter().flatten().chain(status.container_statuses.iter().flatten());
            for c in containers {
                if let Some((reason, message)) = container_problem(c, crash_looping) {
                    return problem(reason, format!("{name}: {message}"));
                }
            }
            let unschedulable = status.conditions.iter().flatten().find(|c| {
                c.type_ == "PodScheduled" && c.status == "False" && c.reason.as_deref() == Some("Unschedulable")
            })?;
            let why = unschedulable.message.as_deref().map(clip).unwrap_or_else(|| "no node fits it".into());
            problem(Reason::Unschedulable, format!("{name} cannot be scheduled: {why}"))
        })
        .collect();
    out.sort_by(|a, b| a.pod.cmp(&b.pod));
    out
}

fn container_problem(c: &ContainerStatus, crash_looping: bool) -> Option<(Reason, String)> {
    let state = c.state.as_ref()?;
    let Some(waiting) = state.waiting.as_ref() else {
        // Running again (not ready) or just exited again, between two back-offs.
        let still = crash_looping && !c.ready && c.restart_count > 0;
        let last_exit = state.terminated.as_ref().or(c.last_state.as_ref().and_then(|s| s.terminated.as_ref()));
        return last_exit.filter(|_| still).map(|t| (Reason::CrashLoopBackOff, crash_message(&c.name, t)));
    };
    let kubelet_says = waiting.message.as_deref().map(clip).filter(|m| !m.is_empty());
    let with_message = |what: String| match &kubelet_says {
        Some(m) => format!("{what}: {m}"),
        None => what,
    };
    let name = &c.name;
    Some(match waiting.reason.as_deref()? {
        "ErrImagePull" | "ImagePullBackOff" | "InvalidImageName" | "ErrImageNeverPull" => {
            (Reason::ImagePullFailed, with_message(format!("container {name} cannot pull its image {}", c.image)))
        }
        "CrashLoopBackOff" => match c.last_state.as_ref().and_then(|s| s.terminated.as_ref()) {
            Some(t) => (Reason::CrashLoopBackOff, crash_message(name, t)),
            None => (Reason::CrashLoopBackOff, format!("container {name} keeps crashing")),
        },
        "CreateContainerConfigError" => {
            (Reason::ContainerConfigError, with_message(format!("container {name} cannot be configured")))
        }
        "CreateContainerError" | "RunContainerError" | "StartError" => {
            (Reason::ContainerStartFailed, with_message(format!("container {name} cannot start")))
        }
        _ => return None,
    })
}

fn crash_message(container: &str, t: &ContainerStateTerminated) -> String {
    let why = t.reason.as_deref().unwrap_or("terminated");
    let mut message = format!("container {container} keeps crashing; last exit: {why}, exit code {}", t.exit_code);
    // With FallbackToLogsOnError this is the tail of the log: its last line is usually
    // the error.
    if let Some(last) = t.message.as_deref().and_then(|m| m.lines().rev().find(|l| !l.trim().is_empty())) {
        message.push_str(&format!(": {}", clip(last)));
    }
    message
}
