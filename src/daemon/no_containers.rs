//! What `det-agent run` answers the master about containers: it registers the node's
//! devices but runs no containers, so a task the master places here must fail at once,
//! with words, instead of waiting forever for a container that never starts.
//!
//! - `StartContainer`: the container is reported `TERMINATED` at once (from `ASSIGNED`, a
//!   valid move, `master/pkg/cproto/state.go`) with a failure of type
//!   [`FailureType::TaskError`] whose message says that this node runs no containers and
//!   what to do. Why `TaskError` ("task failed without an associated exit code"): it is
//!   what the Go agent itself reports when it cannot pull, create or start a container
//!   (`agent/internal/container/container.go`), and the master counts it against the
//!   task's `max_restarts`, so an experiment placed here ends, showing this message,
//!   rather than being rescheduled without bound. `AgentError` ("agent failed to launch
//!   the container") would read better but is a transient system error to the master
//!   (`IsTransientSystemError` in `master/internal/sproto`): it restarts the task
//!   without counting, possibly onto this same node, forever.
//! - `SignalContainer` (the master only sends SIGKILL): answered as the Go agent answers
//!   for a container it does not run (`agent/internal/containers/manager.go`): the saved
//!   terminal state of one of the last 32 containers it failed, else `TERMINATED` with
//!   `request for action on unknown container` / `container is gone on reattachment`.

use std::collections::VecDeque;

use tokio::sync::mpsc;

use crate::link::protocol::{Container, ContainerFailure, ContainerStateChanged, FailureType, State};
use crate::link::{FromMaster, ToMaster};

/// The failure's message for every container the master asks this node to run.
pub const RUNS_NO_CONTAINERS: &str = "this node's agent (det-agent run) keeps the node registered with the master but \
runs no containers, so no task can run here. Keep tasks away from it: give it a resource pool of its own \
(resource_pool) that no task is submitted to; or register it with slot_type: none (zero-slot tasks can still be placed \
here); or run an application that embeds det_agent and runs containers";

/// How many terminal states are kept to answer a late SIGKILL (the Go agent's ring).
const REMEMBERED: usize = 32;

/// The answers of an agent that runs no containers.
#[derive(Debug, Default)]
pub struct NoContainers {
    exited: VecDeque<ContainerStateChanged>,
}

impl NoContainers {
    /// The answer to `message`, if it asks for one.
    pub fn answer(&mut self, message: &FromMaster) -> Option<ToMaster> {
        match message {
            FromMaster::StartContainer(start) => {
                let failure = ContainerFailure::new(FailureType::TaskError, RUNS_NO_CONTAINERS);
                let changed = ContainerStateChanged::terminated(start.container.clone(), Some(failure));
                if self.exited.len() == REMEMBERED {
                    self.exited.pop_front();
                }
                self.exited.push_back(changed.clone());
                Some(ToMaster::ContainerStateChanged(changed))
            }
            FromMaster::SignalContainer(signal) => {
                let saved = self.exited.iter().find(|c| c.container().id == signal.container_id).cloned();
                let changed = saved.unwrap_or_else(|| {
                    let failure =
                        ContainerFailure::new(FailureType::ContainerMissing, "container is gone on reattachment");
                    ContainerStateChanged::terminated(
                        Container::new(&signal.container_id, State::Terminated),
                        Some(failure),
                    )
                });
                Some(ToMaster::ContainerStateChanged(changed))
            }
            FromMaster::SetAgentOptions(_) | FromMaster::Shutdown { .. } => None,
        }
    }
}

/// Answers the master's container requests until either channel closes: the application
/// side of `det-agent run`.
pub async fn serve_without_containers(mut inbound: mpsc::Receiver<FromMaster>, outbound: mpsc::Sender<ToMaster>) {
    let mut answers = NoContainers::default();
    while let Some(message) = inbound.recv().await {
        let Some(answer) = answers.answer(&message) else { continue };
        match &message {
            FromMaster::StartContainer(start) => {
                let container = crate::text::escape(&start.container.id).into_owned();
                tracing::warn!(%container, "the master assigned a container to this node, which runs none; answered that it failed");
            }
            FromMaster::SignalContainer(signal) => {
                let container = crate::text::escape(&signal.container_id).into_owned();
                tracing::info!(%container, signal = signal.signal, "the master signalled a container this node does not run; answered that it is gone");
            }
            _ => {}
        }
        if outbound.send(answer).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::link::protocol::{Change, SignalContainer, StartContainer};

    fn start(id: &str) -> FromMaster {
        FromMaster::StartContainer(StartContainer {
            container: Container::new(id, State::Assigned),
            spec: Default::default(),
        })
    }

    fn kill(id: &str) -> FromMaster {
        FromMaster::SignalContainer(SignalContainer { container_id: id.into(), signal: 9 })
    }

    fn failure(answer: Option<ToMaster>) -> (String, State, FailureType, String) {
        let Some(ToMaster::ContainerStateChanged(changed)) = answer else { panic!("no state change") };
        let Change::Terminated(stopped) = changed.change() else { panic!("not terminated") };
        let failure = stopped.failure.clone().expect("a failure");
        (changed.container().id.clone(), changed.container().state, failure.failure_type, failure.err_msg)
    }

    #[test]
    fn a_started_container_fails_at_once_and_a_kill_is_answered() {
        let mut answers = NoContainers::default();
        let (id, state, kind, message) = failure(answers.answer(&start("c1")));
        assert_eq!((id.as_str(), state, kind), ("c1", State::Terminated, FailureType::TaskError));
        assert_eq!(message, RUNS_NO_CONTAINERS);
        // A late kill gets the same terminal state; an unknown one, the Go agent's answer.
        assert_eq!(failure(answers.answer(&kill("c1"))).2, FailureType::TaskError);
        let (id, _, kind, message) = failure(answers.answer(&kill("c9")));
        assert_eq!(
            (id.as_str(), kind, message.as_str()),
            ("c9", FailureType::ContainerMissing, "container is gone on reattachment")
        );
        // Only the last 32 are remembered.
        for i in 0..REMEMBERED {
            answers.answer(&start(&format!("x{i}")));
        }
        assert_eq!(failure(answers.answer(&kill("c1"))).2, FailureType::ContainerMissing);
        assert_eq!(answers.answer(&FromMaster::Shutdown { err_msg: String::new() }), None);
    }
}
