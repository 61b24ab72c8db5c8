//! The one list of processors. Adding one means adding a line here.

use crate::fanout::Fanout;
use crate::inbox::Inbox;
use crate::persistence::Persistence;
use crate::presence::PresenceProcessor;
use crate::sequencer::Sequencer;
use crate::typing::Typing;
use crate::webhook::Webhook;
use crate::Processor;

/// Every processor, in the order `tidings standalone` starts them.
pub fn registry() -> Vec<Box<dyn Processor>> {
    vec![
        Box::new(Sequencer::default()),
        Box::new(Persistence),
        Box::new(Fanout),
        Box::new(Typing),
        Box::new(PresenceProcessor),
        Box::new(Inbox),
        // Always listed: with no endpoint configured it only follows the log (see its docs).
        Box::new(Webhook),
    ]
}

/// The processor called `name` (`sequencer`, `persistence`, `fanout`, `typing`, `presence`, `inbox`,
/// `webhook`).
pub fn by_name(name: &str) -> Option<Box<dyn Processor>> {
    registry().into_iter().find(|p| p.name() == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_found() {
        let names: Vec<_> = registry().iter().map(|p| p.name()).collect();
        assert_eq!(
            names,
            [
                "sequencer",
                "persistence",
                "fanout",
                "typing",
                "presence",
                "inbox",
                "webhook"
            ]
        );
        for name in names {
            assert_eq!(by_name(name).map(|p| p.name()), Some(name));
        }
        assert!(by_name("nope").is_none());
    }
}
