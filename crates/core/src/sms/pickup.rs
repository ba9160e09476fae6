//! Pick-up codes in courier, locker and station texts, and verification
//! codes (which always pass the marketing filter).
//!
//! The text is cut into code-like tokens (runs of letters, digits and
//! dashes). Each token's shape says what it could be (a shelf code such as
//! `12-3-4567` or `A12-3456`, a run of digits, something else) and the words
//! around it say what it is: a code after 取件码 or "pickup code", a
//! tracking number after 运单号, a phone number, a time, a date, a locker
//! slot before 号柜. The best-scoring candidate in a text that speaks of
//! collecting a parcel is its pick-up code.

use super::text::{fold, is_token_char};

/// The pick-up code in `text`, folded to ASCII (`１２－３` is `12-3`),
/// letters upper-case; `None` when `text` is no pick-up notice or names no
/// code.
pub fn pickup_code(text: &str) -> Option<String> {
    let folded: Vec<char> = fold(text).chars().collect();
    let s: String = folded.iter().collect();
    if !PICKUP_CONTEXT.iter().any(|w| s.contains(w)) {
        return None;
    }
    let mut best: Option<(i32, Token)> = None;
    for token in joined_groups(&folded, tokens(&folded)) {
        let Some(score) = score(&folded, &token) else {
            continue;
        };
        let better = best.as_ref().is_none_or(|(b, t)| {
            score > *b || (score == *b && token.start == t.start && token.end > t.end)
        });
        if better {
            best = Some((score, token));
        }
    }
    let (score, token) = best?;
    (score >= THRESHOLD).then(|| {
        folded[token.start..token.end]
            .iter()
            .collect::<String>()
            .to_ascii_uppercase()
    })
}

/// Whether `text` carries a one-time verification (login, payment) code:
/// a verification word, or a code with what senders of codes say around it
/// ("is your … code", "do not share", "valid for"), and 4 to 8 digits.
pub fn is_verification(text: &str) -> bool {
    let folded: Vec<char> = fold(text).chars().collect();
    let s: String = folded.iter().collect();
    let strong = VERIFICATION_WORDS.iter().any(|w| s.contains(w));
    let code_talk = s.contains("code") && VERIFICATION_HINTS.iter().any(|w| s.contains(w));
    if !(strong || code_talk) {
        return false;
    }
    // "凭验证码 881203 到店消费立减30元": a code to redeem an offer.
    if let Some(at) = s.find("凭验证码") {
        let rest: String = s[at..].chars().take(40).collect();
        if REDEEM_WORDS.iter().any(|w| rest.contains(w)) {
            return false;
        }
    }
    tokens(&folded).iter().any(|t| {
        let body = &folded[t.start..t.end];
        let digits = body.iter().filter(|c| c.is_ascii_digit()).count();
        let letters = body.iter().filter(|c| c.is_ascii_alphabetic()).count();
        (4..=8).contains(&digits) && letters <= 2
    })
}

/// A candidate needs this score: a keyword, or a shelf code in a pick-up
/// text.
const THRESHOLD: i32 = 5;

/// Words without which a text is no pick-up notice.
const PICKUP_CONTEXT: &[&str] = &[
    "取件",
    "取货",
    "提货",
    "领取",
    "取快递",
    "驿站",
    "快递柜",
    "丰巢",
    "包裹",
    "快件",
    "货架",
    "自提",
    "代收点",
    "收件码",
    "开箱",
    "parcel",
    "package",
    "pickup",
    "pick-up",
    "pick up",
    "collect",
    "locker",
    "shipment",
];

/// Words right before a code that name it a pick-up code (folded, lower
/// case), strongest first.
const CODE_WORDS: &[&str] = &[
    "提货验证码",
    "取件验证码",
    "取货验证码",
    "取件码",
    "提货码",
    "取货码",
    "取件密码",
    "取件号",
    "开箱码",
    "开柜码",
    "提取码",
    "收件码",
    "自提码",
    "凭码",
    "凭",
    "pickup code",
    "pick-up code",
    "pick up code",
    "collection code",
    "collection number",
    "pickup number",
    "collect code",
    "locker code",
    "open code",
    "access code",
    "release code",
    "pin code",
    "pin",
    "code",
    "enter",
    "输入",
    "码",
];

/// Whether the words after a code name it one: `50240043是您的取件码`,
/// `6619为取件凭证`, `729415 is your pickup code`.
fn named_after(tail: &str) -> bool {
    let t = tail.trim_start_matches([' ', ',', '，']);
    for lead in ["是您的", "为您的", "是你的", "是", "为"] {
        if let Some(rest) = t.strip_prefix(lead) {
            return CODE_NOUNS.iter().any(|w| rest.starts_with(w));
        }
    }
    if let Some(rest) = t.strip_prefix("is your ") {
        return rest.split('.').next().is_some_and(|p| p.contains("code"));
    }
    let t = t.trim_start_matches(['-', ':', ' ']);
    [
        "use this code",
        "is the code",
        "to open",
        "to unlock",
        "opens the locker",
    ]
    .iter()
    .any(|w| t.starts_with(w))
}

/// What a pick-up code is called after it.
const CODE_NOUNS: &[&str] = &[
    "取件码",
    "取件凭证",
    "取件号",
    "取件密码",
    "提货码",
    "提货凭证",
    "取货码",
    "开箱码",
    "开柜码",
];

/// Words that make a number anything but a pick-up code when they come
/// right before it.
const NOT_CODE_BEFORE: &[&str] = &[
    "promo code",
    "discount code",
    "coupon code",
    "voucher code",
    "优惠码",
    "券码",
    "兑换码",
    "单号",
    "运单",
    "快递单",
    "订单",
    "tracking",
    "track",
    "waybill",
    "order",
    "ref",
    "电话",
    "手机",
    "联系",
    "热线",
    "致电",
    "拨打",
    "客服",
    "tel",
    "phone",
    "call",
    "mobile",
    "柜号",
    "格口",
    "箱号",
    "柜",
    "locker",
    "slot",
    "box",
    "compartment",
    "door",
    "门牌",
    "房间",
    "room",
    "验证码",
    "校验码",
    "动态码",
    "verification",
    "¥",
    "$",
    "£",
    "€",
    "rmb",
];

/// What may follow a number that is not a code: units, slots, times,
/// dates, money.
const NOT_CODE_AFTER: &[&str] = &[
    "号柜",
    "号格",
    "号箱",
    "号货架",
    "号门",
    "号楼",
    "号",
    "点",
    "时",
    "分",
    "秒",
    "月",
    "日",
    "年",
    "元",
    "块",
    "楼",
    "层",
    "室",
    "栋",
    "单元",
    "米",
    "天",
    "小时",
    "分钟",
    "件",
    "个",
    ".",
    "am",
    "pm",
    "%",
];

/// What a code to redeem an offer is for.
const REDEEM_WORDS: &[&str] = &["领取", "消费", "兑换", "立减", "到店", "使用"];

/// What senders of one-time codes say beside "code".
const VERIFICATION_HINTS: &[&str] = &[
    "do not share",
    "don't share",
    "dont share",
    "never share",
    "not share",
    "valid for",
    "expires in",
    "is your",
    "your code",
    "code is",
    "code:",
    "sign-in",
    "sign in",
    "log in",
    "login",
    "registration",
    "confirmation",
    "verify",
    "account",
];

const VERIFICATION_WORDS: &[&str] = &[
    "验证码",
    "校验码",
    "动态码",
    "动态密码",
    "确认码",
    "安全码",
    "授权码",
    "verification code",
    "verify code",
    "security code",
    "one-time",
    "otp",
    "login code",
    "passcode",
    "authentication code",
    "confirmation code",
];

#[derive(Clone, Copy, Debug)]
struct Token {
    /// Char positions in the folded text, dashes trimmed from both ends.
    start: usize,
    end: usize,
}

/// Adds a token for every run of 2 to 3 digit groups of 2 to 4 digits one
/// space apart (`920 571`, `6139 2087`, `80 24 17`): some senders print
/// codes so. Longer tokens come later, and win ties.
fn joined_groups(s: &[char], mut tokens: Vec<Token>) -> Vec<Token> {
    let group = |t: &Token| (2..=4).contains(&(t.end - t.start)) && all_digits(&s[t.start..t.end]);
    let next_to = |a: &Token, b: &Token| b.start == a.end + 1 && s[a.end] == ' ';
    let mut joined = Vec::new();
    for i in 0..tokens.len() {
        let mut end = i;
        while end + 1 < tokens.len()
            && end + 1 - i < 3
            && group(&tokens[end])
            && group(&tokens[end + 1])
            && next_to(&tokens[end], &tokens[end + 1])
        {
            end += 1;
            let digits: usize = tokens[i..=end].iter().map(|t| t.end - t.start).sum();
            if (4..=10).contains(&digits) {
                joined.push(Token {
                    start: tokens[i].start,
                    end: tokens[end].end,
                });
            }
        }
    }
    tokens.extend(joined);
    tokens
}

fn tokens(s: &[char]) -> Vec<Token> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < s.len() {
        if !is_token_char(s[i]) {
            i += 1;
            continue;
        }
        let mut j = i;
        while j < s.len() && is_token_char(s[j]) {
            j += 1;
        }
        let (mut a, mut b) = (i, j);
        while a < b && s[a] == '-' {
            a += 1;
        }
        while b > a && s[b - 1] == '-' {
            b -= 1;
        }
        if a < b {
            out.push(Token { start: a, end: b });
        }
        i = j;
    }
    out
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Shape {
    /// Dash-separated groups with digits: `12-3-4567`, `A12-3456`.
    Shelf,
    /// 4 to 8 digits.
    Digits,
    /// One or two letters and 4 to 8 digits: `AB123456`.
    LetterDigits,
    /// Letters and digits mixed, 4 to 8 of them: `8U4K2P`, `RM4Q7T2`.
    Mixed,
    /// Digit groups a space apart (`6139 2087`, `80 24 17`): a code only
    /// after its word.
    Groups,
}

fn shape(body: &[char]) -> Option<Shape> {
    if body.contains(&' ') {
        // Digit groups (see `joined_groups`).
        return Some(Shape::Groups);
    }
    let digits = body.iter().filter(|c| c.is_ascii_digit()).count();
    let letters = body.iter().filter(|c| c.is_ascii_alphabetic()).count();
    let groups: Vec<&[char]> = body.split(|&c| c == '-').collect();
    if groups.len() >= 2 {
        let ok = groups.len() <= 4
            && groups.iter().all(|g| !g.is_empty() && g.len() <= 6)
            && digits >= 3
            && letters <= 4
            && !is_date(&groups)
            && !is_phone_groups(&groups);
        return ok.then_some(Shape::Shelf);
    }
    if letters == 0 && (4..=8).contains(&digits) {
        return Some(Shape::Digits);
    }
    let lead = body.iter().take_while(|c| c.is_ascii_alphabetic()).count();
    if lead == letters && (1..=2).contains(&letters) && (4..=8).contains(&digits) {
        return Some(Shape::LetterDigits);
    }
    // A word and a number (`SAVE20`, `HUB5`) is a promotion's code.
    let promo = lead >= 3 && lead == letters;
    (letters >= 1 && digits >= 1 && (4..=8).contains(&body.len()) && !promo).then_some(Shape::Mixed)
}

fn all_digits(g: &[char]) -> bool {
    g.iter().all(char::is_ascii_digit)
}

fn number(g: &[char]) -> Option<u32> {
    if g.is_empty() || g.len() > 9 || !all_digits(g) {
        return None;
    }
    g.iter().collect::<String>().parse().ok()
}

/// `2026-12-05`, `12-05` as a month and day after a year.
fn is_date(groups: &[&[char]]) -> bool {
    let n: Vec<Option<u32>> = groups.iter().map(|g| number(g)).collect();
    match n.as_slice() {
        [Some(y), Some(m), Some(d)] => {
            groups[0].len() == 4
                && (1990..=2099).contains(y)
                && (1..=12).contains(m)
                && (1..=31).contains(d)
        }
        [Some(y), Some(m)] => {
            groups[0].len() == 4 && (1990..=2099).contains(y) && (1..=12).contains(m)
        }
        _ => false,
    }
}

/// `021-5555-1234`, `400-111-1111`, `0571-87654321`.
fn is_phone_groups(groups: &[&[char]]) -> bool {
    if !groups.iter().all(|g| all_digits(g)) {
        return false;
    }
    let total: usize = groups.iter().map(|g| g.len()).sum();
    let first = groups[0];
    let area = first.len() >= 3 && first[0] == '0';
    let hotline = first.len() == 3 && matches!(first, ['4', '0', '0'] | ['8', '0', '0']);
    (area || hotline) && total >= 9 || total >= 10
}

fn score(s: &[char], t: &Token) -> Option<i32> {
    let body = &s[t.start..t.end];
    let shape = shape(body)?;
    let before = context_before(s, t.start);
    let after: String = s[t.end..].iter().take(4).collect();
    let after = after.trim_start();
    // `12:30`, `12/05`, `3号柜`, `12月`, `2.50`; a full stop or a colon
    // with no digit after it ends a phrase (`Code 438291: show this`).
    let next_is_digit = |p: &str| {
        after
            .strip_prefix(p)
            .is_some_and(|r| r.starts_with(|c: char| c.is_ascii_digit()))
    };
    if next_is_digit(":") || next_is_digit("/") {
        return None;
    }
    let full_stop = after.starts_with('.') && !next_is_digit(".");
    if !full_stop && NOT_CODE_AFTER.iter().any(|w| after.starts_with(w)) {
        return None;
    }
    if before.ends_with(':') || before.ends_with('/') {
        // The tail of a time or a date.
        let prev = before.trim_end_matches([':', '/']);
        if prev.ends_with(|c: char| c.is_ascii_digit()) {
            return None;
        }
    }
    let tail: String = s[t.end..].iter().take(24).collect();
    let named_after = named_after(&tail);
    let keyword = if named_after {
        Some((0, usize::MAX))
    } else {
        nearest(&before, CODE_WORDS)
    };
    let negative = nearest(&before, NOT_CODE_BEFORE);
    let mut score = match (keyword, negative) {
        // The nearest word decides: `运单号 SF… 取件码 1234` has both; of
        // two ending at one place the longer (`验证码` over `码`).
        (Some(k), Some(n)) if (n.0, std::cmp::Reverse(n.1)) <= (k.0, std::cmp::Reverse(k.1)) => {
            return None;
        }
        (None, Some(_)) => return None,
        (Some((k, _)), _) => 10 - k.min(6) as i32,
        (None, None) => 0,
    };
    match shape {
        Shape::Shelf => score += 5,
        Shape::Digits | Shape::Groups => {}
        Shape::LetterDigits => score -= 2,
        // Only right after the word that names it: words and ids look
        // like this too.
        Shape::Mixed => score -= 4,
    }
    if shape == Shape::Groups && keyword.is_none() {
        return None;
    }
    Some(score)
}

/// Up to 12 chars before `start`, with the separators a code word is
/// followed by (`：`, `是`, `为`, `is`, brackets, spaces) stripped from
/// its end.
fn context_before(s: &[char], start: usize) -> String {
    let from = start.saturating_sub(12);
    let mut before: String = s[from..start].iter().collect();
    loop {
        let trimmed = before
            .trim_end_matches([
                ' ', ':', '：', '是', '为', '【', '[', '(', '（', '"', '“', '「', ',', '，',
            ])
            .trim_end_matches(" is")
            .trim_end_matches(" was")
            .trim_end_matches(" number")
            .trim_end_matches("号码")
            .trim_end_matches("号");
        if trimmed.len() == before.len() {
            return before;
        }
        before = trimmed.to_owned();
    }
}

/// The nearest of `words` before a token: how far (in chars) from the end
/// of `before` it ends, and how long it is (of two ending at one place, the
/// longer names the token: `提货验证码`, not `验证码`).
fn nearest(before: &str, words: &[&str]) -> Option<(usize, usize)> {
    words
        .iter()
        .filter_map(|w| {
            let at = before.rfind(w)?;
            // An English word is one only as a whole word: not `enter` in
            // `center`.
            let glued = w.starts_with(|c: char| c.is_ascii_alphabetic())
                && before[..at].ends_with(|c: char| c.is_ascii_alphanumeric());
            (!glued).then(|| (before[at + w.len()..].chars().count(), w.chars().count()))
        })
        .min_by_key(|&(distance, len)| (distance, std::cmp::Reverse(len)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_after_keywords() {
        for (text, code) in [
            (
                "【菜鸟驿站】您的包裹已到站，取件码12-3-4567，请及时领取",
                "12-3-4567",
            ),
            (
                "【丰巢】取件码：52837196，请到幸福路188号丰巢柜取件",
                "52837196",
            ),
            ("凭码 883102 到丰巢柜取件", "883102"),
            (
                "Your parcel is ready. Your pickup code is 482913.",
                "482913",
            ),
            ("Use code A12-3456 at the locker", "A12-3456"),
            (
                "【兔喜生活】您的包裹已到达小区东门驿站，请凭 5-1-2233 及时领取",
                "5-1-2233",
            ),
            ("取件码：１２－３－４５６７，包裹已到", "12-3-4567"),
        ] {
            assert_eq!(pickup_code(text).as_deref(), Some(code), "{text}");
        }
    }

    #[test]
    fn never_a_tracking_number_phone_time_date_or_slot() {
        for text in [
            "您的快递正在派送中，快递员13912345678，运单号SF1234567890123",
            "包裹已放入3号柜格口18，请于20:00前取件，电话400-111-1111",
            "Your parcel 1Z999AA10123456784 is out for delivery, call 02155551234",
            "您的包裹已到驿站，12月5日前取件，地址幸福路188号",
        ] {
            assert_eq!(pickup_code(text), None, "{text}");
        }
    }

    #[test]
    fn the_tracking_number_is_not_the_code() {
        let t =
            "【中通快递】运单号773204567890123的包裹已到菜鸟驿站，取件码6-2-1028，电话13800138000";
        assert_eq!(pickup_code(t).as_deref(), Some("6-2-1028"));
    }

    #[test]
    fn verification_codes() {
        assert!(is_verification(
            "【某银行】验证码 482913，5分钟内有效。回T退订"
        ));
        assert!(is_verification(
            "Your verification code is 5521. Reply STOP to opt out"
        ));
        assert!(!is_verification("取件码12-3-4567"));
        assert!(!is_verification("Your verification code is ready"));
    }
}
