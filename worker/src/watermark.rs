//! Combining the watermarks of a task's input channels (Flink's
//! `StatusWatermarkValve`).
//!
//! A task's event time is the minimum over its input channels, because any
//! channel may still deliver records up to its own watermark. Channels that
//! said they are idle do not count until they send a watermark again, and
//! channels that ended count as infinitely advanced. The combined watermark
//! never goes backwards: a channel that wakes up behind it cannot undo what
//! downstream operators already fired.

use crate::Watermark;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ChannelStatus {
    Active(i64),
    Idle(i64),
    Ended,
}

/// Tracks the watermark of every input channel and emits the combined one.
#[derive(Debug)]
pub struct WatermarkValve {
    channels: Vec<ChannelStatus>,
    /// The last combined watermark emitted.
    emitted: i64,
    /// Whether the last thing emitted was [`Watermark::Idle`].
    idle: bool,
}

impl WatermarkValve {
    /// A valve over `channels` input channels, all active and at the start of time.
    pub fn new(channels: usize) -> Self {
        Self { channels: vec![ChannelStatus::Active(i64::MIN); channels], emitted: i64::MIN, idle: false }
    }

    /// A watermark or idleness arrived on `channel`; returns what to pass on.
    pub fn on_watermark(&mut self, channel: usize, mark: Watermark) -> Option<Watermark> {
        let status = self.channels.get_mut(channel)?;
        *status = match (*status, mark) {
            (ChannelStatus::Ended, _) => ChannelStatus::Ended,
            (ChannelStatus::Active(old) | ChannelStatus::Idle(old), Watermark::At(time)) => {
                ChannelStatus::Active(old.max(time))
            }
            (ChannelStatus::Active(old) | ChannelStatus::Idle(old), Watermark::Idle) => ChannelStatus::Idle(old),
        };
        self.combine()
    }

    /// `channel` ended: it no longer holds event time back.
    pub fn on_end(&mut self, channel: usize) -> Option<Watermark> {
        *self.channels.get_mut(channel)? = ChannelStatus::Ended;
        self.combine()
    }

    fn combine(&mut self) -> Option<Watermark> {
        let active = self.channels.iter().filter_map(|status| match status {
            ChannelStatus::Active(time) => Some(*time),
            _ => None,
        });
        match active.min() {
            Some(time) if time > self.emitted || self.idle => {
                // Waking up from idleness re-announces at least the last value.
                self.emitted = self.emitted.max(time);
                self.idle = false;
                Some(Watermark::At(self.emitted))
            }
            Some(_) => None,
            None if self.channels.iter().all(|status| *status == ChannelStatus::Ended) => {
                // Everything ended; the task's end of input fires what is left.
                None
            }
            None if !self.idle => {
                self.idle = true;
                Some(Watermark::Idle)
            }
            None => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_minimum_of_the_channels_advances_only() {
        let mut valve = WatermarkValve::new(2);
        assert_eq!(valve.on_watermark(0, Watermark::At(10)), None, "channel 1 is still at the start");
        assert_eq!(valve.on_watermark(1, Watermark::At(5)), Some(Watermark::At(5)));
        assert_eq!(valve.on_watermark(1, Watermark::At(20)), Some(Watermark::At(10)));
        assert_eq!(valve.on_watermark(0, Watermark::At(8)), None, "a channel's watermark never goes back");
        assert_eq!(valve.on_watermark(0, Watermark::At(30)), Some(Watermark::At(20)));
    }

    #[test]
    fn idle_channels_do_not_hold_back_and_wake_up_without_going_back() {
        let mut valve = WatermarkValve::new(2);
        assert_eq!(valve.on_watermark(0, Watermark::At(100)), None);
        assert_eq!(valve.on_watermark(1, Watermark::Idle), Some(Watermark::At(100)));
        assert_eq!(valve.on_watermark(0, Watermark::Idle), Some(Watermark::Idle), "all idle: idle downstream");
        assert_eq!(valve.on_watermark(0, Watermark::Idle), None, "said once");
        assert_eq!(valve.on_watermark(1, Watermark::At(40)), Some(Watermark::At(100)), "active again, not behind");
        assert_eq!(valve.on_watermark(1, Watermark::At(150)), Some(Watermark::At(150)));
    }

    #[test]
    fn ended_channels_count_as_infinitely_advanced() {
        let mut valve = WatermarkValve::new(3);
        valve.on_watermark(0, Watermark::At(7));
        valve.on_watermark(1, Watermark::At(9));
        assert_eq!(valve.on_end(2), Some(Watermark::At(7)));
        assert_eq!(valve.on_end(0), Some(Watermark::At(9)));
        assert_eq!(valve.on_end(1), None, "the end of input fires the rest");
    }
}
