//! Catching up after a log that started empty (DESIGN rule 6), and logs that lost what they held.
//!
//! Owns `CatchUp`, the vote guard of a log that started empty: its mark at start (`CatchUp::open`),
//! the screening of peer messages before raft-rs sees them (`screen`: vote requests ignored while
//! behind, the first leader's term and commit noted, a heartbeat beyond the log's end answered with
//! a rejection — or, for a log that did not start empty, the node halted with `LogLost`), the
//! leader's `forget_lost_progress` for a follower that lost acknowledged entries, `check_caught_up`
//! after each `Ready`, and `drop_own_vote_requests` while behind.
//!
//! A log that started empty does not know what it acknowledged or whom it voted for before (a wiped
//! data directory looks exactly like a new node), so it must not help elect a leader that lacks
//! entries it once held, nor vote twice in a term (it catches up from a leader first). While `mark`
//! is `Fresh` no peer has shown that anything was ever committed, and it takes part in elections as
//! any node of a new cluster does. Once a peer reports a commit index above 0 it is `Behind`: it
//! neither votes nor campaigns. It is caught up once its log holds an entry of the term of the first
//! leader it heard from (so all of that leader's log before its term) and has committed what that
//! leader had committed then. What no live peer knows it cannot know (see the README).

use raft::eraftpb::{Message, MessageType};
use slog::{debug, info, warn, Logger};

use super::Replica;
use crate::storage::{CatchUpMark, DurableLog};
use crate::ClusterError;

/// Where a log that started empty stands (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct CatchUp {
    mark: CatchUpMark,
    /// The first leader's term and commit index.
    until: Option<(u64, u64)>,
    /// The log started empty (or half caught up) in this process: everything in it came from this
    /// cluster's leaders since, so a heartbeat claiming more is stale, not a sign of a lost log.
    started_empty: bool,
}

impl CatchUp {
    /// The mark a replica starts with, recorded in `log` when it changes. `alone`: the only voter
    /// (nothing to catch up from); `initialized`: the log holds a configuration of its own;
    /// `join`: the node joins a running cluster, which therefore has a history.
    pub(super) fn open<L: DurableLog>(
        log: &mut L,
        alone: bool,
        initialized: bool,
        join: bool,
        logger: &Logger,
    ) -> Result<Self, ClusterError> {
        let mark = match log.catch_up() {
            _ if alone => CatchUpMark::Done,
            CatchUpMark::Done if initialized => CatchUpMark::Done,
            CatchUpMark::Done => {
                // `join` says the cluster exists: no need to wait for a peer to show it.
                let mark = if join { CatchUpMark::Behind } else { CatchUpMark::Fresh };
                log.set_catch_up(mark)?;
                mark
            }
            mark => mark,
        };
        if mark != CatchUpMark::Done {
            info!(logger, "the log started empty: no part in elections of a cluster with a history until caught up";
                "mark" => ?mark);
        }
        Ok(CatchUp { mark, until: None, started_empty: mark != CatchUpMark::Done })
    }

    /// The log did not start empty, or has caught up since: what this node reports to the leader,
    /// whose membership guard counts only voters that vote. A `Fresh` log is not caught up: it votes
    /// only until it hears of a commit, and a leader always has one (its election's entry).
    pub(super) fn caught_up(&self) -> bool {
        self.mark == CatchUpMark::Done
    }
}

impl<L: DurableLog> Replica<L> {
    /// Look at a peer message before raft-rs steps it. Returns whether to step it (a vote request
    /// while behind is not); may rewrite its commit index, queue a rejection in the outbox, or
    /// halt the replica with `LogLost`.
    pub(super) fn screen(&mut self, message: &mut Message) -> Result<bool, ClusterError> {
        let last_index = raft::Storage::last_index(self.node.store())?;
        let catching_up = self.catch_up.mark != CatchUpMark::Done;
        if catching_up && self.catch_up.mark == CatchUpMark::Fresh && message.commit > 0 {
            info!(self.logger, "a peer has committed entries: this cluster has a history; no votes until caught up";
                "peer" => message.from, "commit" => message.commit, "msg_type" => ?message.get_msg_type());
            self.node.mut_store().set_catch_up(CatchUpMark::Behind)?;
            self.catch_up.mark = CatchUpMark::Behind;
        }
        match message.get_msg_type() {
            MessageType::MsgHeartbeat if message.commit > last_index => {
                // The leader says entries up to `commit` are on this node's disk (it remembers our
                // acknowledgements), but the log ends before that (raft-rs would panic here).
                if !catching_up && !self.catch_up.started_empty {
                    // A log that was not known to start empty lost acknowledged entries: it must not
                    // vote or serve. It stops; the operator rejoins it (see the README).
                    self.halted = true;
                    return Err(ClusterError::LogLost { leader: message.from, commit: message.commit, last_index });
                }
                // Started empty: expected (also a heartbeat sent before the leader started over and
                // delivered after we caught up). Tell the leader at once with a rejection of what it
                // thinks we hold (it then starts over, see `forget_lost_progress`); an idle leader
                // would otherwise send nothing until its next entry.
                let mut rejection = Message::default();
                rejection.set_msg_type(MessageType::MsgAppendResponse);
                rejection.to = message.from;
                rejection.from = self.node_id;
                rejection.term = message.term;
                rejection.reject = true;
                rejection.index = last_index;
                rejection.reject_hint = last_index;
                self.outbox.push(rejection);
                message.commit = last_index;
            }
            MessageType::MsgRequestVote | MessageType::MsgRequestPreVote
                if self.catch_up.mark == CatchUpMark::Behind =>
            {
                debug!(self.logger, "vote request ignored while catching up";
                    "candidate" => message.from, "term" => message.term, "candidate_commit" => message.commit);
                return Ok(false);
            }
            MessageType::MsgAppend | MessageType::MsgSnapshot
                if catching_up && self.catch_up.until.is_none() && message.term >= self.node.raft.term =>
            {
                let commit = message.commit.max(message.get_snapshot().get_metadata().index);
                info!(self.logger, "catching up from the leader"; "leader" => message.from, "term" => message.term,
                    "until_commit" => commit);
                self.catch_up.until = Some((message.term, commit));
            }
            MessageType::MsgAppendResponse if message.reject && self.is_leader() => self.forget_lost_progress(message),
            _ => {}
        }
        Ok(true)
    }

    /// A follower that rejects an append below what it acknowledged before has lost its log (a
    /// wiped data directory, or a disk without fsync). raft-rs takes such a rejection for a stale
    /// message and would wait forever; start over from what the follower has, so it gets a snapshot
    /// or the entries again. Lowering `matched` never lowers the commit index.
    fn forget_lost_progress(&mut self, message: &Message) {
        let term = self.node.raft.term;
        let Some(progress) = self.node.raft.mut_prs().get_mut(message.from) else { return };
        if message.term != term || message.reject_hint >= progress.matched {
            return;
        }
        warn!(self.logger, "a follower lost entries it had acknowledged: sending them again";
            "follower" => message.from, "acknowledged" => progress.matched, "has" => message.reject_hint);
        progress.matched = message.reject_hint;
        progress.become_probe();
    }

    /// Leave catch-up once the log holds what the first leader heard from had (called after the
    /// Ready is durable).
    pub(super) fn check_caught_up(&mut self) -> Result<(), ClusterError> {
        if self.catch_up.mark == CatchUpMark::Done {
            return Ok(());
        }
        let caught_up = if self.is_leader() {
            // Elected: a leader's log holds every committed entry (Raft's leader completeness).
            true
        } else if let Some((term, commit)) = self.catch_up.until {
            let store = self.node.store();
            let last_term = raft::Storage::term(store, raft::Storage::last_index(store)?)?;
            last_term >= term && self.node.raft.raft_log.committed >= commit
        } else {
            false
        };
        if caught_up {
            self.node.mut_store().set_catch_up(CatchUpMark::Done)?;
            self.catch_up.mark = CatchUpMark::Done;
            self.catch_up.until = None;
            info!(self.logger, "caught up from the leader: takes part in elections again");
        }
        Ok(())
    }

    /// While `Behind`, this node's own vote requests stay home: its log may lack entries it once
    /// acknowledged, so it must not lead.
    pub(super) fn drop_own_vote_requests(&self, messages: &mut Vec<Message>) {
        if self.catch_up.mark == CatchUpMark::Behind {
            messages
                .retain(|m| !matches!(m.get_msg_type(), MessageType::MsgRequestVote | MessageType::MsgRequestPreVote));
        }
    }
}
