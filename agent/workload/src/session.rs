//! Multi-turn sessions: a conversation whose every turn sends the earlier turns and the
//! server's answers, then a new user message.
//!
//! The driver sends a session's first turn like any request, keeps the answer's text (the
//! client captures it only for requests that ask), and asks
//! [`RequestBuilder::next_turn`](super::RequestBuilder::next_turn) for the next turn, which it
//! sends after the class's think time. A turn's input length is the whole conversation:
//! every earlier message, every answer, and the new message.

use std::time::Duration;

use stampede_common::workload::ChatMessage;

/// A conversation in progress.
#[derive(Debug, Clone)]
pub struct Session {
    /// The request class.
    pub(crate) class: usize,
    /// Number of the first turn in the run's sequence; later turns draw from it.
    pub(crate) global: u64,
    /// Id of the first turn; turn k's id carries k - 1 in its top bits.
    pub(crate) first_id: u64,
    /// Turns sent so far.
    pub(crate) turn: u32,
    turns: u32,
    think_time: Duration,
    /// The conversation so far.
    pub(crate) messages: Vec<ChatMessage>,
    /// Its length in tokens: the sum of the messages' lengths.
    pub(crate) tokens: u32,
}

impl Session {
    /// A session whose first turn, `messages` of `tokens` tokens, is about to be sent.
    pub(crate) fn new(
        class: usize,
        global: u64,
        first_id: u64,
        turns: u32,
        think_time_us: u64,
        messages: Vec<ChatMessage>,
        tokens: u32,
    ) -> Session {
        Session {
            class,
            global,
            first_id,
            turn: 1,
            turns,
            think_time: Duration::from_micros(think_time_us),
            messages,
            tokens,
        }
    }

    /// Adds a message of `tokens` tokens to the conversation.
    pub(crate) fn push(&mut self, m: ChatMessage, tokens: u32) {
        self.messages.push(m);
        self.tokens = self.tokens.saturating_add(tokens);
    }

    /// True once every turn has been sent.
    pub fn done(&self) -> bool {
        self.turn >= self.turns
    }

    /// Pause between an answer and the next turn.
    pub fn think_time(&self) -> Duration {
        self.think_time
    }

    /// Turns sent so far.
    pub fn turn(&self) -> u32 {
        self.turn
    }

    /// The conversation so far.
    pub fn messages(&self) -> &[ChatMessage] {
        &self.messages
    }

    /// Its length in tokens.
    pub fn tokens(&self) -> u32 {
        self.tokens
    }
}
