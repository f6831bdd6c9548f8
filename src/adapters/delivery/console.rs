//! Local development delivery: prints the message to the dev server's log. Refused in production by the
//! configuration, because it is the one place a code is written to a log.

use crate::login::Message;

pub const NAME: &str = "console";

pub struct Console;

impl Console {
    pub fn print(&self, message: &Message) {
        worker::console_log!(
            "console-delivery channel={} to={} code={} language={}\n{}\n{}",
            message.to.channel().as_str(),
            message.to.value(),
            message.code.expose(),
            message.language.tag(),
            message.subject,
            message.text
        );
    }
}
