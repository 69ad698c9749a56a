//! The terminal labeler's state and key handling, free of I/O: keys in, effects out (answers to
//! send, undo, more samples wanted, quit). The terminal layer (`tui.rs`) reads keys, draws the
//! session and carries the effects to the node's API. Keys are the labeling page's defaults.

use std::collections::VecDeque;

/// A key, as the session understands it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Key {
    Char(char),
    Backspace,
    Left,
    Right,
    Esc,
}

/// A sample's content as the terminal shows it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Content {
    Text(String),
    /// Column names and values of a table row.
    Row(Vec<(String, f64)>),
}

/// One sample to show, with why it was chosen and the model's guesses.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Item {
    pub(crate) sample: String,
    pub(crate) content: Content,
    pub(crate) why: String,
    /// The model's top guesses: label and probability.
    pub(crate) guesses: Vec<(String, f64)>,
    /// The human's answer in this session, if any.
    pub(crate) answer: Option<String>,
}

/// What the human answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Answer {
    Label(String),
    Skip,
    Unsure,
}

/// What the terminal layer must do after a key.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Effect {
    /// Send this answer for this sample (with the model's top guess when it was on screen).
    Send {
        sample: String,
        answer: Answer,
        suggestion: Option<(String, f64)>,
    },
    /// Undo the human's last label on the node.
    Undo,
    /// Fetch more samples: the queue runs low.
    More,
    /// Leave.
    Quit,
}

/// Answers given without the model's view before it is shown by default (as on the page).
pub(crate) const UNAIDED: usize = 5;
/// Fetch more when fewer samples than this wait.
pub(crate) const LOW: usize = 3;

/// The keys of the label set: `1`-`9`, then `a`-`z`.
pub(crate) fn label_key(index: usize) -> Option<char> {
    "123456789abcdefghijklmnopqrstuvwxyz".chars().nth(index)
}

/// A labeling session of one dataset.
#[derive(Debug)]
pub(crate) struct Session {
    pub(crate) labels: Vec<String>,
    pub(crate) queue: VecDeque<Item>,
    pub(crate) history: Vec<Item>,
    /// Index in `history` of the item shown.
    pub(crate) at: Option<usize>,
    pub(crate) show_why: bool,
    pub(crate) unaided: usize,
    /// One line for the human (what just happened, or what to do).
    pub(crate) message: String,
}

impl Session {
    pub(crate) fn new(labels: Vec<String>) -> Session {
        Session {
            labels,
            queue: VecDeque::new(),
            history: Vec::new(),
            at: None,
            show_why: false,
            unaided: 0,
            message: String::new(),
        }
    }

    /// The item shown, if any.
    pub(crate) fn current(&self) -> Option<&Item> {
        self.at.and_then(|i| self.history.get(i))
    }

    /// Adds fetched samples to the queue (ones already held are dropped) and shows the first if
    /// nothing is shown.
    pub(crate) fn receive(&mut self, items: Vec<Item>) {
        for item in items {
            let held = self
                .queue
                .iter()
                .chain(&self.history)
                .any(|i| i.sample == item.sample);
            if !held {
                self.queue.push_back(item);
            }
        }
        if self.current().is_none() {
            self.advance();
        }
    }

    /// Sample ids the session holds (to exclude from the next fetch).
    pub(crate) fn held(&self) -> Vec<String> {
        let recent = self.history.len().saturating_sub(100);
        self.queue
            .iter()
            .chain(&self.history[recent..])
            .map(|i| i.sample.clone())
            .collect()
    }

    fn advance(&mut self) {
        match self.at {
            Some(i) if i + 1 < self.history.len() => self.at = Some(i + 1),
            _ => {
                if let Some(item) = self.queue.pop_front() {
                    self.history.push(item);
                    self.at = Some(self.history.len() - 1);
                } else {
                    self.at = None;
                    self.message = "nothing left to label here for now".into();
                }
            }
        }
    }

    /// Handles one key.
    pub(crate) fn on_key(&mut self, key: Key) -> Vec<Effect> {
        let mut effects = Vec::new();
        match key {
            Key::Esc => return vec![Effect::Quit],
            Key::Backspace => {
                effects.push(Effect::Undo);
                let last = self
                    .history
                    .iter()
                    .rposition(|i| i.answer.as_deref().is_some_and(|a| a != "skip"));
                if let Some(index) = last {
                    let mut item = self.history.remove(index);
                    item.answer = None;
                    self.history.push(item);
                    self.at = Some(self.history.len() - 1);
                    self.message = "undone: label this sample again, or skip it".into();
                }
            }
            Key::Left => {
                if let Some(i) = self.at.filter(|i| *i > 0) {
                    self.at = Some(i - 1);
                }
            }
            Key::Right => match self.at {
                Some(i) if i + 1 < self.history.len() => self.at = Some(i + 1),
                _ => self.message = "label or skip this sample to go on".into(),
            },
            Key::Char('\\') => self.show_why = !self.show_why,
            Key::Char(' ') => effects.extend(self.answer(Answer::Skip)),
            Key::Char('/') => effects.extend(self.answer(Answer::Unsure)),
            Key::Char(c) => {
                let index = (0..self.labels.len()).find(|i| label_key(*i) == Some(c));
                match index {
                    Some(i) => {
                        let label = self.labels[i].clone();
                        effects.extend(self.answer(Answer::Label(label)));
                    }
                    None => self.message = format!("'{c}' is not a key of this dataset"),
                }
            }
        }
        if self.queue.len() < LOW {
            effects.push(Effect::More);
        }
        effects
    }

    fn answer(&mut self, answer: Answer) -> Option<Effect> {
        let show_why = self.show_why;
        let item = self.at.and_then(|i| self.history.get_mut(i))?;
        let suggestion = match &answer {
            Answer::Label(_) if show_why => item.guesses.first().cloned(),
            _ => None,
        };
        item.answer = Some(match &answer {
            Answer::Label(l) => l.clone(),
            Answer::Skip => "skip".into(),
            Answer::Unsure => "unsure".into(),
        });
        let sample = item.sample.clone();
        if matches!(answer, Answer::Label(_)) && !show_why {
            self.unaided += 1;
            if self.unaided == UNAIDED {
                self.show_why = true;
            }
        }
        self.message.clear();
        self.advance();
        Some(Effect::Send {
            sample,
            answer,
            suggestion,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(n: u8) -> Item {
        Item {
            sample: format!("{n:02x}").repeat(32),
            content: Content::Text(format!("text {n}")),
            why: "no model yet".into(),
            guesses: vec![("spam".into(), 0.8)],
            answer: None,
        }
    }

    fn session(n: u8) -> Session {
        let mut s = Session::new(vec!["ham".into(), "spam".into()]);
        s.receive((0..n).map(item).collect());
        s
    }

    fn sent(effects: &[Effect]) -> Vec<(String, Answer)> {
        effects
            .iter()
            .filter_map(|e| match e {
                Effect::Send { sample, answer, .. } => Some((sample.clone(), answer.clone())),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn keys_answer_and_advance_like_the_page() {
        let mut s = session(10);
        assert_eq!(s.current().unwrap().sample, item(0).sample);
        let e = s.on_key(Key::Char('2'));
        assert_eq!(sent(&e), [(item(0).sample, Answer::Label("spam".into()))]);
        assert_eq!(s.current().unwrap().sample, item(1).sample, "auto-advance");
        assert_eq!(
            sent(&s.on_key(Key::Char(' '))),
            [(item(1).sample, Answer::Skip)]
        );
        assert_eq!(
            sent(&s.on_key(Key::Char('/'))),
            [(item(2).sample, Answer::Unsure)]
        );
        // A key that is not a label of this dataset does nothing but say so.
        assert!(sent(&s.on_key(Key::Char('7'))).is_empty());
        assert!(s.message.contains("'7'"));
        // Previous shows the last answered sample with its answer; answering it again edits it.
        s.on_key(Key::Left);
        assert_eq!(s.current().unwrap().answer.as_deref(), Some("unsure"));
        s.on_key(Key::Left);
        s.on_key(Key::Left);
        assert_eq!(s.current().unwrap().sample, item(0).sample);
        let e = s.on_key(Key::Char('1'));
        assert_eq!(sent(&e), [(item(0).sample, Answer::Label("ham".into()))]);
        assert_eq!(
            s.current().unwrap().sample,
            item(1).sample,
            "on to the next seen"
        );
        assert_eq!(s.on_key(Key::Esc), [Effect::Quit]);
    }

    #[test]
    fn undo_brings_back_the_last_label_and_asks_the_node() {
        let mut s = session(10);
        s.on_key(Key::Char('1'));
        s.on_key(Key::Char(' '));
        let e = s.on_key(Key::Backspace);
        assert!(e.contains(&Effect::Undo));
        let shown = s.current().unwrap();
        assert_eq!(shown.sample, item(0).sample, "the label, not the skip");
        assert_eq!(shown.answer, None);
    }

    #[test]
    fn the_models_view_shows_after_five_unaided_labels_and_is_then_sent() {
        let mut s = session(10);
        for _ in 0..UNAIDED {
            assert!(!s.show_why);
            let e = s.on_key(Key::Char('1'));
            assert!(matches!(
                &e[0],
                Effect::Send {
                    suggestion: None,
                    ..
                }
            ));
        }
        assert!(s.show_why, "shown by default after five unaided labels");
        let e = s.on_key(Key::Char('1'));
        assert!(matches!(
            &e[0],
            Effect::Send { suggestion: Some((l, p)), .. } if l == "spam" && *p == 0.8
        ));
        s.on_key(Key::Char('\\'));
        assert!(!s.show_why, "toggled off");
    }

    #[test]
    fn asks_for_more_when_the_queue_runs_low_and_drops_what_it_holds() {
        let mut s = session(4);
        let e = s.on_key(Key::Char('1'));
        assert!(e.contains(&Effect::More), "{e:?}");
        s.receive(vec![item(1), item(9)]);
        assert_eq!(s.queue.len(), 3, "item 1 was held already");
        let mut s = session(1);
        s.on_key(Key::Char('1'));
        assert!(s.current().is_none());
        assert!(s.message.contains("nothing left"));
    }
}
