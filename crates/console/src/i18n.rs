//! The console's two languages. Every text a page shows is a field of
//! [`Text`], and each language is one `const` of it: a key missing in
//! either language does not compile, so no page can show an untranslated
//! key. Numbers, dates and durations are formatted here for the language.

use maskline_core::UnixTime;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Lang {
    En,
    Zh,
}

impl Lang {
    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Zh => "zh-CN",
        }
    }

    /// The value of the `lang` cookie and of `?lang=`.
    pub fn param(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Zh => "zh",
        }
    }

    pub fn from_param(s: &str) -> Option<Lang> {
        match s {
            "en" => Some(Lang::En),
            "zh" => Some(Lang::Zh),
            _ => None,
        }
    }

    /// The first language of an `Accept-Language` header we speak, by
    /// quality; English when none.
    pub fn negotiate(accept: &str) -> Lang {
        let mut best: Option<(f32, Lang)> = None;
        for item in accept.split(',') {
            let mut parts = item.split(';');
            let tag = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let q = parts
                .filter_map(|p| p.trim().strip_prefix("q="))
                .find_map(|q| q.parse::<f32>().ok())
                .unwrap_or(1.0);
            let lang = match tag.split('-').next() {
                Some("zh") => Lang::Zh,
                Some("en") => Lang::En,
                _ => continue,
            };
            if q > 0.0 && best.is_none_or(|(bq, _)| q > bq) {
                best = Some((q, lang));
            }
        }
        best.map_or(Lang::En, |(_, l)| l)
    }

    pub fn text(self) -> &'static Text {
        match self {
            Lang::En => &EN,
            Lang::Zh => &ZH,
        }
    }

    /// `1234567` as `1,234,567` (both languages group by thousands).
    pub fn int(self, n: u64) -> String {
        let digits = n.to_string();
        let mut out = String::with_capacity(digits.len() + digits.len() / 3);
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                out.push(',');
            }
            out.push(c);
        }
        out
    }

    /// A time in UTC: `7 Dec 2026 16:05` / `2026年12月7日 16:05`.
    pub fn time(self, t: UnixTime) -> String {
        let Ok(dt) = time::OffsetDateTime::from_unix_timestamp(t) else {
            return t.to_string();
        };
        match self {
            Lang::En => format!(
                "{} {} {} {:02}:{:02} UTC",
                dt.day(),
                &MONTHS[usize::from(u8::from(dt.month())) - 1],
                dt.year(),
                dt.hour(),
                dt.minute()
            ),
            Lang::Zh => format!(
                "{}年{}月{}日 {:02}:{:02} UTC",
                dt.year(),
                u8::from(dt.month()),
                dt.day(),
                dt.hour(),
                dt.minute()
            ),
        }
    }

    /// `3725` seconds as `1 h 2 min 5 s` / `1小时2分5秒`.
    pub fn duration(self, secs: i64) -> String {
        let secs = secs.max(0);
        let (d, h, m, s) = (
            secs / 86_400,
            secs % 86_400 / 3600,
            secs % 3600 / 60,
            secs % 60,
        );
        let units: [(i64, &str, &str); 4] = [
            (d, " d", "天"),
            (h, " h", "小时"),
            (m, " min", "分"),
            (s, " s", "秒"),
        ];
        let parts: Vec<String> = units
            .iter()
            .skip_while(|(n, _, _)| *n == 0)
            .filter(|(n, _, _)| *n > 0)
            .map(|(n, en, zh)| match self {
                Lang::En => format!("{n}{en}"),
                Lang::Zh => format!("{n}{zh}"),
            })
            .collect();
        if parts.is_empty() {
            return match self {
                Lang::En => "0 s".into(),
                Lang::Zh => "0秒".into(),
            };
        }
        match self {
            Lang::En => parts.join(" "),
            Lang::Zh => parts.concat(),
        }
    }
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Every text of the console: its key, then English, then Simplified
/// Chinese. One line per text keeps the two side by side.
macro_rules! texts {
    ($($key:ident: $en:literal, $zh:literal;)*) => {
        /// Every text of the console, in one language.
        pub struct Text {
            $(pub $key: &'static str,)*
        }

        pub const EN: Text = Text { $($key: $en,)* };
        pub const ZH: Text = Text { $($key: $zh,)* };

        /// Every key with its English and Chinese text, for tests.
        #[cfg(test)]
        pub(crate) const ALL: &[(&str, &str, &str)] = &[$((stringify!($key), $en, $zh),)*];
    };
}

texts! {
    product: "Maskline console", "Maskline 控制台";
    skip_to_content: "Skip to content", "跳到正文";
    nav_label: "Main", "主菜单";
    nav_overview: "Overview", "概览";
    nav_numbers: "Numbers", "号码池";
    nav_bindings: "Bindings", "绑定";
    nav_calls: "Calls", "通话";
    nav_messages: "Texts", "短信";
    nav_events: "Events", "事件";
    nav_settings: "Settings", "设置";
    nav_keys: "API keys", "API 密钥";
    nav_users: "Users", "用户";
    nav_audit: "Audit log", "审计日志";
    sign_out: "Sign out", "退出";
    signed_in_as: "Signed in as", "当前用户";
    language: "Language", "语言";
    other_language: "中文", "English";
    other_language_param: "zh", "en";
    role_admin: "admin", "管理员";
    role_owner: "owner", "所有者";
    role_operator: "operator", "操作员";
    role_viewer: "viewer", "查看者";
    sign_in_title: "Sign in", "登录";
    email: "Email", "邮箱";
    password: "Password", "密码";
    sign_in: "Sign in", "登录";
    sign_in_refused: "Wrong email or password.", "邮箱或密码错误。";
    sign_in_throttled: "Too many sign-in attempts from your address: try again in {} s.", "来自您地址的登录尝试过多，请 {} 秒后再试。";
    sign_in_locked: "Too many failed sign-ins: this account is locked until", "登录失败次数过多，账号已锁定至";
    signed_out: "You have signed out.", "您已退出。";
    rate_limited_title: "Too many requests", "请求过多";
    rate_limited: "Your tenant has made more requests than its rate allows (its API keys and console users share it). Try again in {} s.", "您的租户请求次数超过了其速率限制（其 API 密钥与控制台用户共用该限制）。请 {} 秒后再试。";
    forbidden_title: "Refused", "已拒绝";
    csrf_refused: "This form has expired or did not come from this console. Reload the page and try again.", "此表单已过期或并非来自本控制台。请刷新页面后重试。";
    not_found_title: "Not found", "未找到";
    not_found: "There is nothing here.", "这里什么也没有。";
    error_title: "Something went wrong", "出错了";
    error_internal: "The server could not do this. Try again; if it keeps failing, tell your operator.", "服务器无法完成此操作。请重试；如果仍然失败，请联系运维人员。";
    admin_pick_tenant: "Choose the tenant to look at.", "请选择要查看的租户。";
    tenant: "Tenant", "租户";
    show: "Show", "查看";
    overview_title: "Overview", "概览";
    live_bindings: "Live bindings", "有效绑定";
    active: "Active", "生效中";
    cooling: "Cooling down", "冷却中";
    ended: "Ended", "已结束";
    last_24h: "The last 24 hours (UTC)", "最近 24 小时（UTC）";
    calls_per_minute: "Calls per minute", "每分钟通话数";
    texts_per_minute: "Texts per minute", "每分钟短信数";
    total_24h: "in all:", "合计";
    peak_per_minute: "at most a minute:", "每分钟最多";
    list_sep: ", ", "，";
    webhook_backlog: "Events waiting for the webhook:", "等待推送的事件：";
    pool_use: "Pool use per area", "各地区号码池使用情况";
    pool_use_chart: "Numbers in use out of the pool, per area", "各地区号码池中已使用的号码";
    area: "Area", "地区";
    no_area: "(none)", "（无）";
    in_use: "In use", "使用中";
    total: "In pool", "号码池";
    no_pool: "This tenant has no numbers yet.", "该租户还没有号码。";
    bindings_title: "Bindings", "绑定";
    search: "Search", "搜索";
    party: "Party number", "用户号码";
    party_hint: "Full number, e.g. +8613800000000", "完整号码，例如 +8613800000000";
    searching_party: "Showing bindings of", "当前显示此号码的绑定：";
    external_ref: "External reference", "外部单号";
    status: "Status", "状态";
    any_status: "Any", "全部";
    mode: "Mode", "模式";
    x: "Virtual number X", "隐私号 X";
    a: "Party A", "A 方";
    b: "Party B", "B 方";
    created: "Created", "创建时间";
    expires: "Expires", "到期时间";
    actions: "Actions", "操作";
    no_bindings: "No binding matches.", "没有匹配的绑定。";
    next_page: "Next page", "下一页";
    first_page: "First page", "第一页";
    create_binding: "Create a binding", "新建绑定";
    expires_in_hours: "Expires in (hours)", "有效期（小时）";
    create: "Create", "创建";
    end: "End", "解绑";
    end_confirm: "End this binding? Its number stops connecting the parties at once.", "确定解绑？该隐私号将立即停止为双方接通。";
    extend: "Extend", "延期";
    extend_hours: "Extend by (hours)", "延长（小时）";
    binding_created: "Binding created:", "已创建绑定：";
    binding_ended: "Binding ended:", "已解绑：";
    binding_extended: "Binding extended:", "已延期：";
    masked_note: "Party numbers are masked.", "用户号码已脱敏显示。";
    mode_axb: "AXB (two parties)", "AXB（双方）";
    mode_axn: "AXN (one party, anyone calls)", "AXN（单方，任何人可拨打）";
    mode_axe: "AXE (extension)", "AXE（分机号）";
    invalid_number: "Not a valid phone number.", "电话号码无效。";
    invalid_hours: "Hours must be a whole number from 1 to 4320.", "小时数须为 1 到 4320 之间的整数。";
    invalid_ref: "An external reference is at most 128 characters.", "外部单号最多 128 个字符。";
    refused_missing_b: "Mode AXB needs both parties.", "AXB 模式需要双方号码。";
    refused_same_party: "A and B must be different numbers.", "A 与 B 必须是不同的号码。";
    refused_party_virtual: "A party may not be one of the pool's virtual numbers.", "用户号码不能是号码池中的隐私号。";
    refused_destination: "A party's number is outside the allowed destinations (call settings).", "用户号码不在允许的呼叫目的地范围内（呼叫设置）。";
    refused_pool_exhausted: "No number in the pool can serve this binding.", "号码池中没有可用于此绑定的号码。";
    refused_party_conflict: "A party is already bound on every number that could serve.", "可用的号码上都已绑定了该用户。";
    refused_mode_conflict: "The number serves bindings of another mode.", "该号码用于其他模式的绑定。";
    refused_number_held: "Another binding holds this shared number.", "该共享号码已被其他绑定占用。";
    refused_extension_taken: "That extension is taken on this number.", "该号码上的此分机号已被占用。";
    refused_capacity: "The server holds as many bindings as it can: end some first.", "服务器的绑定数量已达上限，请先结束部分绑定。";
    refused_number_not_found: "The number is not in this pool.", "该号码不在此号码池中。";
    refused_not_active: "Only an active binding can change.", "只有生效中的绑定可以修改。";
    refused_expiry: "That expiry is not allowed.", "不允许该有效期。";
    refused_other: "Refused:", "已拒绝：";
    calls_title: "Calls", "通话记录";
    time: "Time", "时间";
    caller: "Caller", "主叫";
    callee: "Called party", "被叫";
    direction: "Direction", "方向";
    duration: "Talk time", "通话时长";
    outcome: "Outcome", "结果";
    recording: "Recording", "录音";
    recording_of: "Recording of the call at", "通话录音，时间";
    no_calls: "No call matches.", "没有匹配的通话。";
    answered: "Answered", "已接通";
    dir_a_to_b: "A → B", "A 呼叫 B";
    dir_b_to_a: "B → A", "B 呼叫 A";
    dir_n_to_a: "Anyone → A", "他人呼叫 A";
    reason_normal: "Hung up", "正常挂断";
    reason_cancelled: "Caller gave up", "主叫取消";
    reason_busy: "Busy", "被叫忙";
    reason_declined: "Declined", "被叫拒接";
    reason_no_answer: "No answer", "无人接听";
    reason_not_found: "Number unreachable", "号码无法接通";
    reason_failed: "Failed", "呼叫失败";
    reason_gateway_timeout: "Carrier did not answer", "运营商无响应";
    reason_max_duration: "Time limit reached", "达到通话时长上限";
    reason_peer_timeout: "A leg stopped answering", "一方无响应";
    reason_media_timeout: "Audio stopped", "语音中断";
    reason_refused: "Refused", "已拒绝";
    reason_shutdown: "Server shut down", "服务器关闭";
    reason_node_restart: "Node restarted", "节点重启";
    messages_title: "Texts", "短信";
    from: "From", "发送方";
    to: "To", "接收方";
    text: "Text", "内容";
    pickup_code: "Pick-up code", "取件码";
    reason: "Reason", "原因";
    no_messages: "No text matches.", "没有匹配的短信。";
    msg_relayed: "Relayed", "已转发";
    msg_held: "Held", "已暂存";
    msg_blocked: "Blocked", "已拦截";
    msg_delivered: "Delivered", "已送达";
    msg_failed: "Failed", "发送失败";
    why_marketing: "Marketing (filter)", "营销短信（过滤）";
    why_tenant_rule: "One of your rules", "命中自定义规则";
    why_sms_disabled: "Texts are off for this binding", "该绑定已关闭短信";
    why_direction_forbidden: "Direction not allowed", "方向不允许";
    why_expired: "Binding ended", "绑定已结束";
    why_no_binding: "No binding for this sender", "发送方没有绑定";
    why_no_b: "No party B to relay to", "没有可转发的 B 方";
    why_extension_unknown: "No extension known", "未知分机号";
    why_undeliverable: "Undeliverable", "无法送达";
    why_submit_failed: "No carrier took it", "运营商未接收";
    message_id: "Text", "短信";
    release: "Relay", "放行";
    release_to: "Relay to extension", "转发到分机号";
    text_released: "Released and relayed to", "已放行并转发至";
    invalid_extension: "An extension is 1 to 8 digits.", "分机号为 1 到 8 位数字。";
    refused_unknown_extension: "No active binding on this number has that extension.", "该号码上没有使用此分机号的有效绑定。";
    refused_not_held: "This text is not held any more.", "该短信已不在暂存中。";
    refused_release_blocked: "It stays held: it would be blocked.", "仍保持暂存：该短信会被拦截。";
    owners_only: "Only an owner or an admin manages this.", "只有所有者或管理员可以管理此项。";
    keys_title: "API keys", "API 密钥";
    prefix: "Key", "密钥";
    revoked: "Revoked", "已吊销";
    revoke: "Revoke", "吊销";
    revoke_confirm: "Revoke this key? Requests made with it are refused at once.", "确定吊销此密钥？使用它的请求将立即被拒绝。";
    create_key: "Create a key", "新建密钥";
    key_created: "Key created.", "密钥已创建。";
    new_key_once: "Copy this key now: it is shown only once.", "请立即复制此密钥：它只显示这一次。";
    users_title: "Users", "用户";
    role: "Role", "角色";
    locked_until: "Locked until", "锁定至";
    create_user: "Add a user", "添加用户";
    password_hint: "At least 12 characters.", "至少 12 个字符。";
    user_created: "User added:", "已添加用户：";
    remove_user: "Remove", "移除";
    remove_user_confirm: "Remove this user? Their sessions end at once.", "确定移除该用户？其登录会话将立即结束。";
    user_removed: "User removed; their sessions have ended.", "已移除用户，其登录会话已结束。";
    cannot_remove_self: "You cannot remove yourself.", "不能移除自己。";
    invalid_role: "Choose viewer, operator or owner.", "请选择查看者、操作员或所有者。";
    email_taken: "A user with this email exists.", "该邮箱已有用户。";
    invalid_email: "Not an email address.", "邮箱地址无效。";
    invalid_password: "The password must be at least 12 characters.", "密码至少需要 12 个字符。";
    audit_title: "Audit log", "审计日志";
    who: "Who", "操作者";
    action: "Action", "操作";
    object: "Object", "对象";
    source: "From", "来源";
    api_key: "API key", "API 密钥";
    admin_key: "Admin key", "管理员密钥";
    reveal: "Show numbers", "显示号码";
    reveal_title: "Numbers of one record", "单条记录的号码";
    reveal_audited: "Seeing these numbers was written to the audit log with your name.", "本次查看已以您的名义记入审计日志。";
    back_to_list: "Back to the list", "返回列表";
    binding_id: "Binding", "绑定";
    call_id: "Call", "通话";
    events_title: "Events and webhook deliveries", "事件与推送";
    event_type: "Event", "事件";
    delivery: "Delivery", "推送状态";
    attempts: "Attempts", "尝试次数";
    last_answer: "Last answer", "最近一次响应";
    redeliver: "Send again", "重新推送";
    event_redelivered: "The event is queued to be sent again.", "该事件已重新排队推送。";
    no_webhook: "No webhook is set: there is nowhere to send it.", "尚未设置推送地址，无法推送。";
    no_events: "No events yet.", "还没有事件。";
    delivery_none: "Not sent (no webhook wanted it)", "未推送（当时无推送地址）";
    delivery_pending: "Waiting", "等待推送";
    delivery_delivered: "Delivered", "已送达";
    delivery_failed: "Failed", "推送失败";
    numbers_title: "Numbers", "号码池";
    idle: "Idle", "空闲";
    bindings_count: "Bindings", "绑定数";
    import_csv: "Import numbers from a CSV file", "从 CSV 文件导入号码";
    csv_file: "CSV file", "CSV 文件";
    csv_hint: "One number a line, optionally a comma and its area; a first line number,area is skipped. All or nothing.", "每行一个号码，可在逗号后写地区；首行 number,area 会被跳过。全部导入或全部不导入。";
    uploading: "Uploading", "正在上传";
    import: "Import", "导入";
    importing: "Importing…", "正在导入…";
    numbers_imported: "Imported:", "已导入：";
    numbers_existing: "already in the pool:", "已在号码池中：";
    number_retired: "Retired:", "已停用：";
    invalid_area: "an area is 1 to 16 letters, digits or -", "地区须为 1 到 16 个字母、数字或 -";
    csv_line: "Line {}: ", "第 {} 行：";
    csv_number: "Number {} of the file: ", "文件中第 {} 个号码：";
    csv_unreadable: "The file is not UTF-8 text.", "文件不是 UTF-8 文本。";
    csv_empty: "The file holds no numbers.", "文件中没有号码。";
    csv_too_long: "At most 100,000 numbers a file.", "每个文件最多 100,000 个号码。";
    number_taken: "it belongs to another pool; nothing was imported", "该号码属于其他号码池；未导入任何号码";
    number_in_use: "A binding still holds this number.", "仍有绑定在使用该号码。";
    retire: "Retire", "停用";
    retire_confirm: "Retire this number? It leaves the pool.", "确定停用该号码？它将移出号码池。";
    settings_title: "Settings", "设置";
    sms_settings: "Texts", "短信";
    sms_prefix: "Prefix of relayed texts", "转发短信的前缀";
    sms_prefix_hint: "Up to 32 characters, e.g. 【Shop】; empty for none.", "最多 32 个字符，例如【平台名】；留空则不加。";
    marketing_filter: "Block bulk marketing to shared numbers (pick-up and verification codes always pass)", "拦截发往共享号码的群发营销短信（取件码与验证码始终放行）";
    sms_rules: "Your rules", "自定义规则";
    sms_rules_hint: "One a line: block or allow, a space, then a regular expression, matched regardless of case. The first that matches decides.", "每行一条：block 或 allow，空格，再写正则表达式（不区分大小写）。以第一条匹配的规则为准。";
    save: "Save", "保存";
    settings_saved: "Saved.", "已保存。";
    prefix_too_long: "The prefix is at most 32 characters.", "前缀最多 32 个字符。";
    rule_line: "Rule on line {} is not block or allow and a valid regular expression.", "第 {} 行的规则无效：须为 block 或 allow 加有效的正则表达式。";
    too_many_rules: "At most 100 rules.", "最多 100 条规则。";
    call_rules: "Calls through the trunk", "经中继的呼叫";
    calls_now: "Calls in progress:", "进行中的通话：";
    calls_last_second: "started in the last second:", "最近一秒新建：";
    allow_prefixes: "Destinations allowed (prefixes)", "允许的目的地（号码前缀）";
    deny_prefixes: "Destinations refused (prefixes)", "禁止的目的地（号码前缀）";
    prefixes_hint: "+ and 1 to 15 digits each, separated by spaces, commas or lines; at most 256. A refused prefix wins over an allowed one.", "每个为 + 加 1 到 15 位数字，以空格、逗号或换行分隔，最多 256 个；禁止优先于允许。";
    max_concurrent: "Most calls at once", "最大并发通话数";
    max_per_second: "Most new calls a second", "每秒最多新建通话数";
    cap_hint: "1 to 1,000,000, over every node; empty for no cap.", "1 到 1,000,000，按所有节点合计；留空表示不限。";
    invalid_prefixes: "A prefix is + and 1 to 15 digits, at most 256 in a list.", "号码前缀须为 + 加 1 到 15 位数字，每个列表最多 256 个。";
    invalid_cap: "A cap is a whole number from 1 to 1,000,000, or empty.", "上限须为 1 到 1,000,000 的整数，或留空。";
    file_too_large: "The file is over 2 MB.", "文件超过 2 MB。";
    prompts: "Voice prompts", "语音提示";
    prompts_hint: "Callers hear these before a call connects or is refused. Replace one with a WAV file: 8 kHz, mono, PCM 16-bit, A-law or μ-law, at most 2 MB.", "主叫在接通或被拒绝前会听到这些提示。可用 WAV 文件替换：8 kHz、单声道、PCM 16 位、A 律或 μ 律，最大 2 MB。";
    prompt: "Prompt", "提示音";
    plays: "Plays", "播放";
    prompt_own: "Yours, since", "自定义，更新于";
    prompt_builtin: "Built-in", "内置";
    mandarin: "Mandarin", "普通话";
    english: "English", "英语";
    listen: "Listen", "试听";
    wav_file: "WAV file", "WAV 文件";
    replace: "Replace", "替换";
    revert: "Use the built-in one", "恢复内置";
    prompt_replaced: "Replaced:", "已替换：";
    prompt_reverted: "The built-in one plays again:", "已恢复内置：";
    wav_missing: "Choose a WAV file.", "请选择 WAV 文件。";
    wav_unreadable: "This is not a WAV file that can be read.", "无法读取该 WAV 文件。";
    wav_encoding: "Use PCM 16-bit, A-law or μ-law.", "请使用 PCM 16 位、A 律或 μ 律编码。";
    wav_rate: "The sample rate is {} Hz; 8,000 Hz is needed.", "采样率为 {} Hz，需要 8,000 Hz。";
    wav_channels: "The file has {} channels; one (mono) is needed.", "文件有 {} 个声道，需要单声道。";
    wav_too_long: "At most 10 minutes.", "最长 10 分钟。";
    wav_empty: "The file holds no audio.", "文件中没有音频。";
    seconds_short: "s", "秒";
    prompt_enter_extension: "Asks for the extension", "请输入分机号";
    prompt_invalid_extension: "Wrong extension", "分机号错误";
    prompt_expired: "The binding has ended", "绑定已结束";
    prompt_no_binding: "Number not bound", "号码未绑定";
    prompt_forbidden: "Call not allowed", "呼叫不被允许";
    prompt_pre_connect: "Before connecting", "接通前提示";
    prompt_callee_whisper: "Whisper to the one called", "被叫接听提示";
    prompt_last_minute: "Last minute of the call", "通话最后一分钟提醒";
    prompt_recording_notice: "The call is recorded", "通话录音提示";
    nav_tenants: "Tenants", "租户";
    tenants_title: "Tenants", "租户";
    admins_only: "Only an admin manages tenants.", "只有管理员可以管理租户。";
    tenant_name: "Name", "名称";
    api_rate: "API requests a second", "每秒 API 请求数";
    rate_hint: "A tenant's own limit of API requests a second (bursts of twice that); 0 for none; empty for the server's.", "租户自己的每秒 API 请求上限（突发可达两倍）；0 表示不限；留空则使用服务器默认值。";
    rate_unlimited: "No limit", "不限";
    per_second: "a second", "次/秒";
    server_default: "the server's", "服务器默认";
    invalid_rate: "A rate is a whole number from 0 to 10,000,000, or empty.", "请求上限须为 0 到 10,000,000 的整数，或留空。";
    create_tenant: "Add a tenant", "添加租户";
    tenant_created: "Tenant added:", "已添加租户：";
    invalid_tenant_name: "A name is 1 to 200 characters.", "名称须为 1 到 200 个字符。";
    of_binding: "Of one binding only:", "仅显示此绑定的记录：";
    webhook: "Webhook", "事件推送（Webhook）";
    webhook_hint: "Maskline POSTs each event to this address, signed with the secret (the Maskline-Signature header).", "Maskline 会把每个事件 POST 到该地址，并用签名密钥签名（Maskline-Signature 请求头）。";
    webhook_url: "Address (http or https)", "地址（http 或 https）";
    webhook_events: "Event types", "事件类型";
    webhook_events_hint: "Separated by spaces or commas, e.g. call.ended sms.*; empty for every type.", "以空格或逗号分隔，例如 call.ended sms.*；留空表示全部类型。";
    intercept_url: "Call intercept address (optional)", "呼叫拦截回调地址（可选）";
    intercept_hint: "Asked before each call connects; its answer lets the call through or refuses it.", "每次通话接通前询问该地址，由其决定放行或拒绝。";
    intercept_fallback: "When it does not answer in time", "回调超时或失败时";
    fallback_allow: "Connect the call", "放行通话";
    fallback_deny: "Refuse the call", "拒绝通话";
    intercept_timeout: "How long to wait (ms)", "等待时间（毫秒）";
    rotate_secret: "New signing secret", "更换签名密钥";
    remove_webhook: "Remove the webhook", "删除 Webhook";
    remove_webhook_confirm: "Remove the webhook? Events are still kept, but no longer sent.", "确定删除 Webhook？事件仍会保存，但不再推送。";
    new_secret_once: "Copy this signing secret now: it is shown only once.", "请立即复制此签名密钥：它只显示这一次。";
    webhook_saved: "Webhook saved.", "Webhook 已保存。";
    webhook_removed: "No webhook: events are kept, not sent.", "已无 Webhook：事件仍会保存，但不推送。";
    secret_rotated: "A new signing secret is in use.", "已启用新的签名密钥。";
    invalid_url: "Not a usable http(s) address.", "不是可用的 http(s) 地址。";
    url_not_allowed: "This address is on a private or local network: not allowed.", "该地址位于私有或本地网络，不允许使用。";
    invalid_patterns: "Unknown event type: use e.g. call.ended, a family such as call.*, or * (at most 32).", "未知的事件类型：请使用如 call.ended、call.* 或 *（最多 32 个）。";
    invalid_timeout: "Wait 50 to 10,000 ms.", "等待时间须为 50 到 10,000 毫秒。";
    from_day: "On or after (UTC)", "起始日期（UTC）";
    until_day: "On or before (UTC)", "截至日期（UTC）";
    invalid_date: "A date is year-month-day, e.g. 2026-12-07.", "日期格式为年-月-日，例如 2026-12-07。";
    show_all: "Show all", "显示全部";
    read_only: "Your role may look but not change anything.", "您的角色只能查看，不能修改。";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_language_picks_the_best_language_we_speak() {
        let cases = [
            ("", Lang::En),
            ("zh-CN,zh;q=0.9,en;q=0.8", Lang::Zh),
            ("en-US,en;q=0.9,zh-CN;q=0.8", Lang::En),
            ("fr-FR, zh;q=0.5, en;q=0.4", Lang::Zh),
            ("fr", Lang::En),
            ("zh;q=0, en;q=0.1", Lang::En),
            ("ZH-tw", Lang::Zh),
            ("en;q=0.2, zh-Hans;q=0.7", Lang::Zh),
            (";;;,,,q=", Lang::En),
        ];
        for (header, want) in cases {
            assert_eq!(Lang::negotiate(header), want, "{header:?}");
        }
    }

    #[test]
    fn integers_group_by_thousands() {
        for (n, want) in [
            (0, "0"),
            (999, "999"),
            (1000, "1,000"),
            (1_234_567, "1,234,567"),
            (u64::MAX, "18,446,744,073,709,551,615"),
        ] {
            assert_eq!(Lang::En.int(n), want);
            assert_eq!(Lang::Zh.int(n), want);
        }
    }

    #[test]
    fn times_and_durations_read_as_each_language_writes_them() {
        let t = 1_796_659_500; // 2026-12-07 16:05:00 UTC
        assert_eq!(Lang::En.time(t), "7 Dec 2026 16:05 UTC");
        assert_eq!(Lang::Zh.time(t), "2026年12月7日 16:05 UTC");
        assert_eq!(Lang::En.duration(0), "0 s");
        assert_eq!(Lang::Zh.duration(-5), "0秒");
        assert_eq!(Lang::En.duration(3725), "1 h 2 min 5 s");
        assert_eq!(Lang::Zh.duration(3725), "1小时2分5秒");
        assert_eq!(Lang::En.duration(86_400 + 60), "1 d 1 min");
        assert_eq!(Lang::Zh.duration(59), "59秒");
    }

    #[test]
    fn every_text_is_translated() {
        // A text left untranslated would read the same in both languages;
        // these few are the same on purpose.
        let same: &[&str] = &[];
        for (key, en, zh) in ALL {
            assert!(
                !en.trim().is_empty() && !zh.trim().is_empty(),
                "{key} is empty"
            );
            if !same.contains(key) {
                assert_ne!(en, zh, "{key} is not translated");
            }
            if *key != "other_language" {
                assert!(
                    !zh.is_ascii() || key.starts_with("other_language"),
                    "{key}'s Chinese text has no Chinese: {zh:?}"
                );
            }
        }
        assert_eq!(EN.other_language_param, Lang::Zh.param());
        assert_eq!(ZH.other_language_param, Lang::En.param());
    }
}
