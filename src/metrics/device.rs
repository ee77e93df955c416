//! Device type from the User-Agent, with ASE's upper-case names (`MAC_OS_X`, `UNKNOWN`).
//!
//! woothee classifies the agent; its operating system (or, for crawlers and consoles, its
//! category) picks the name. Anything it cannot place is `UNKNOWN`, as in ASE's reports
//! (a `DOWNLOAD` or `curl/8.0` agent is `UNKNOWN`). Parsing costs microseconds, so the
//! recorder parses each distinct agent once per bucket and keeps the answer with it.

/// The device classes enforcer reports.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[repr(u8)]
pub enum Device {
    Unknown,
    MacOsX,
    Windows,
    WindowsPhone,
    Linux,
    Bsd,
    ChromeOs,
    Android,
    Ios,
    BlackBerry,
    MobilePhone,
    GameConsole,
    Bot,
}

impl Device {
    /// Number of variants (for per-device counter arrays).
    pub const COUNT: usize = 13;

    pub const ALL: [Device; Device::COUNT] = [
        Device::Unknown,
        Device::MacOsX,
        Device::Windows,
        Device::WindowsPhone,
        Device::Linux,
        Device::Bsd,
        Device::ChromeOs,
        Device::Android,
        Device::Ios,
        Device::BlackBerry,
        Device::MobilePhone,
        Device::GameConsole,
        Device::Bot,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Device::Unknown => "UNKNOWN",
            Device::MacOsX => "MAC_OS_X",
            Device::Windows => "WINDOWS",
            Device::WindowsPhone => "WINDOWS_PHONE",
            Device::Linux => "LINUX",
            Device::Bsd => "BSD",
            Device::ChromeOs => "CHROME_OS",
            Device::Android => "ANDROID",
            Device::Ios => "IOS",
            Device::BlackBerry => "BLACKBERRY",
            Device::MobilePhone => "MOBILE_PHONE",
            Device::GameConsole => "GAME_CONSOLE",
            Device::Bot => "BOT",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }

    /// Classifies a User-Agent header value.
    pub fn of(user_agent: &str) -> Device {
        let Some(ua) = woothee::parser::Parser::new().parse(user_agent) else {
            return Device::Unknown;
        };
        match ua.category {
            "crawler" => return Device::Bot,
            "appliance" => return Device::GameConsole,
            _ => {}
        }
        match ua.os {
            "Mac OSX" | "Mac OS Classic" => Device::MacOsX,
            "Windows Phone OS" => Device::WindowsPhone,
            os if os.starts_with("Windows") => Device::Windows,
            "Linux" => Device::Linux,
            "BSD" => Device::Bsd,
            "ChromeOS" => Device::ChromeOs,
            "Android" => Device::Android,
            "iPhone" | "iPad" | "iPod" | "iOS" => Device::Ios,
            "BlackBerry" | "BlackBerry 10" => Device::BlackBerry,
            _ if ua.category == "mobilephone" => Device::MobilePhone,
            _ => Device::Unknown,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_agents_map_to_ase_names() {
        let cases = [
            ("DOWNLOAD", Device::Unknown),
            ("curl/8.4.0", Device::Unknown),
            (
                "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15",
                Device::MacOsX,
            ),
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36",
                Device::Windows,
            ),
            (
                "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
                Device::Ios,
            ),
            (
                "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Mobile Safari/537.36",
                Device::Android,
            ),
            (
                "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
                Device::Bot,
            ),
        ];
        for (ua, want) in cases {
            assert_eq!(Device::of(ua), want, "{ua}");
        }
        assert_eq!(Device::ALL.len(), Device::COUNT);
        assert!(Device::ALL.iter().enumerate().all(|(i, d)| d.index() == i));
    }
}
