//! The reads both back ends run as the same SQL, written once.
//!
//! `shared_reads!` expands, in each back end's module, to an inherent
//! `read_*` method per read that its `Store` implementation delegates to.
//! Placeholders are `$1`, `$2`, … in both: PostgreSQL's own, and SQLite
//! binds `$NNN` by its number. What differs is passed in: the read pool,
//! how an id is bound (a 16-byte BLOB or a UUID), and the odd spelling
//! (the column numbers keep their import order in; the integer type of a
//! concatenated text's reference; SQLite's index hint for a window of CDRs). The column lists and row readers named
//! here resolve in the module that expands the macro.
//!
//! Reads that differ for a reason stay in their back end: where PostgreSQL
//! wants a fixed statement for its plan cache (`events`, `claim_*`), an
//! array instead of an IN list (`bindings_by_id`) or its `live_until`
//! column (`bindings_on`, the start-up scan), and SQLite its index hints.

/// Numbered placeholders for SQL built from fragments: `$1`, `$2`, …
pub(crate) struct Params(pub(crate) usize);

impl Params {
    pub(crate) fn next(&mut self) -> String {
        self.0 += 1;
        format!("${}", self.0)
    }
}

/// A list's id comparison and direction: ascending from `after`, or
/// newest first below it.
pub(crate) fn order(newest_first: bool) -> (&'static str, &'static str) {
    if newest_first {
        ("<", "DESC")
    } else {
        (">", "ASC")
    }
}

/// The lowest UUIDv7 id made at or after `ms`: such ids begin with their
/// milliseconds (48 bits), so an id bound is a time bound on the id index.
pub fn first_id_at(ms: maskline_core::UnixMillis) -> u128 {
    u128::from(u64::try_from(ms).unwrap_or(0)) << 80
}

/// Where a page starts when no `after` is given: below every id, or above.
pub(crate) fn start(after: Option<u128>, newest_first: bool) -> u128 {
    after.unwrap_or(if newest_first { u128::MAX } else { 0 })
}

macro_rules! shared_reads {
    (
        store: $store:ty,
        pool: $pool:ident,
        id: $id:ident,
        numbers_in_import_order: $order:literal,
        tenant_id: $tenant_id:ty,
        reference: $reference:ty,
        calls_by_time: $calls_by_time:literal,
        by_party: [$by_a:literal, $by_b:literal, $by_caller:literal, $by_callee:literal $(,)?] $(,)?
    ) => {
        impl $store {
            pub(crate) async fn read_open_calls(&self, node: &str) -> Result<Vec<CallRecord>> {
                let sql =
                    format!("SELECT {CALL_COLUMNS} FROM open_calls WHERE node = $1 ORDER BY id");
                let rows = sqlx::query(AssertSqlSafe(sql))
                    .bind(node)
                    .fetch_all(&self.$pool)
                    .await?;
                rows.iter()
                    .map(|r| $crate::rows::call_record(r, &self.keys))
                    .collect()
            }

            pub(crate) async fn read_open_call_nodes(&self) -> Result<Vec<String>> {
                Ok(
                    sqlx::query_scalar("SELECT DISTINCT node FROM open_calls ORDER BY node")
                        .fetch_all(&self.$pool)
                        .await?,
                )
            }

            pub(crate) async fn read_get_meta(&self, key: &str) -> Result<Option<String>> {
                Ok(sqlx::query_scalar("SELECT value FROM meta WHERE key = $1")
                    .bind(key)
                    .fetch_optional(&self.$pool)
                    .await?)
            }

            pub(crate) async fn read_tenants(&self) -> Result<Vec<Tenant>> {
                let rows = sqlx::query(
                    "SELECT id, name, api_key_hash, created_at FROM tenants ORDER BY id",
                )
                .fetch_all(&self.$pool)
                .await?;
                rows.iter().map($crate::rows::tenant).collect()
            }

            pub(crate) async fn read_audit(
                &self,
                tenant: TenantId,
                page: Page<i64>,
            ) -> Result<Vec<(i64, AuditEntry)>> {
                let rows = sqlx::query(
                    "SELECT seq, tenant_id, key_id, action, object, status, at, source, user_id \
                     FROM audit WHERE tenant_id = $1 AND seq < $2 ORDER BY seq DESC LIMIT $3",
                )
                .bind($id(tenant.0))
                .bind(page.after.unwrap_or(i64::MAX))
                .bind(i64::from(page.limit))
                .fetch_all(&self.$pool)
                .await?;
                rows.iter().map($crate::rows::audit_entry).collect()
            }

            pub(crate) async fn read_api_keys(&self) -> Result<Vec<ApiKey>> {
                let rows = sqlx::query(
                    "SELECT id, tenant_id, prefix, hash, created_at, revoked_at FROM api_keys \
                     ORDER BY created_at, id",
                )
                .fetch_all(&self.$pool)
                .await?;
                rows.iter().map($crate::rows::api_key).collect()
            }

            pub(crate) async fn read_user_by_email(&self, email: &str) -> Result<Option<User>> {
                let sql = format!(
                    "SELECT {} FROM users WHERE email = $1",
                    $crate::rows::USER_COLUMNS
                );
                let row = sqlx::query(AssertSqlSafe(sql))
                    .bind(email)
                    .fetch_optional(&self.$pool)
                    .await?;
                row.as_ref().map($crate::rows::user).transpose()
            }

            pub(crate) async fn read_users(&self, tenant: Option<TenantId>) -> Result<Vec<User>> {
                let cols = $crate::rows::USER_COLUMNS;
                let rows = match tenant {
                    Some(t) => {
                        let sql =
                            format!("SELECT {cols} FROM users WHERE tenant_id = $1 ORDER BY id");
                        sqlx::query(AssertSqlSafe(sql))
                            .bind($id(t.0))
                            .fetch_all(&self.$pool)
                            .await?
                    }
                    None => {
                        let sql = format!("SELECT {cols} FROM users ORDER BY id");
                        sqlx::query(AssertSqlSafe(sql))
                            .fetch_all(&self.$pool)
                            .await?
                    }
                };
                rows.iter().map($crate::rows::user).collect()
            }

            pub(crate) async fn read_console_session(
                &self,
                token_hash: [u8; 32],
            ) -> Result<Option<(ConsoleSession, User)>> {
                let row = sqlx::query(
                    "SELECT u.id, u.email, u.password_hash, u.role, u.tenant_id, u.created_at, \
                     u.failed_signins, u.locked_until, s.token_hash, \
                     s.created_at AS opened_at, s.expires_at AS session_expires_at \
                     FROM console_sessions s JOIN users u ON u.id = s.user_id \
                     WHERE s.token_hash = $1",
                )
                .bind(&token_hash[..])
                .fetch_optional(&self.$pool)
                .await?;
                row.as_ref().map($crate::rows::console_session).transpose()
            }

            pub(crate) async fn read_api_key(&self, hash: [u8; 32]) -> Result<Option<ApiKey>> {
                let row = sqlx::query(
                    "SELECT id, tenant_id, prefix, hash, created_at, revoked_at FROM api_keys \
                     WHERE hash = $1",
                )
                .bind(&hash[..])
                .fetch_optional(&self.$pool)
                .await?;
                row.as_ref().map($crate::rows::api_key).transpose()
            }

            pub(crate) async fn read_all_numbers(&self) -> Result<Vec<PoolNumber>> {
                let rows = sqlx::query(concat!(
                    "SELECT number, tenant_id, area, created_at FROM numbers ORDER BY ",
                    $order
                ))
                .fetch_all(&self.$pool)
                .await?;
                rows.iter().map($crate::rows::pool_number).collect()
            }

            pub(crate) async fn read_numbers(
                &self,
                tenant: TenantId,
                page: Page<Number>,
            ) -> Result<Vec<PoolNumber>> {
                let rows = sqlx::query(
                    "SELECT number, tenant_id, area, created_at FROM numbers \
                     WHERE tenant_id = $1 AND number > $2 ORDER BY number LIMIT $3",
                )
                .bind($id(tenant.0))
                .bind(page.after.map(|n| n.to_string()).unwrap_or_default())
                .bind(i64::from(page.limit))
                .fetch_all(&self.$pool)
                .await?;
                rows.iter().map($crate::rows::pool_number).collect()
            }

            pub(crate) async fn read_binding(
                &self,
                tenant: TenantId,
                id: BindingId,
            ) -> Result<Option<Binding>> {
                let sql = format!(
                    "SELECT {BINDING_COLUMNS} FROM bindings WHERE id = $1 AND tenant_id = $2"
                );
                let row = sqlx::query(AssertSqlSafe(sql))
                    .bind($id(id.0))
                    .bind($id(tenant.0))
                    .fetch_optional(&self.$pool)
                    .await?;
                row.as_ref()
                    .map(|r| $crate::rows::binding(r, &self.keys))
                    .transpose()
            }

            pub(crate) async fn read_bindings(
                &self,
                tenant: TenantId,
                filter: &BindingFilter,
                page: Page<BindingId>,
            ) -> Result<Vec<Binding>> {
                use maskline_core::BindingStatus;
                // Built from fixed fragments only; every value is a bound
                // parameter.
                let mut p = $crate::reads::Params(2);
                let (cmp, dir) = $crate::reads::order(filter.newest_first);
                let mut sql = format!("tenant_id = $1 AND id {cmp} $2");
                if filter.external_ref.is_some() {
                    sql.push_str(&format!(" AND external_ref = {}", p.next()));
                }
                // A party is looked up in its A and its B index, each branch
                // with every other filter; parameters keep their numbers in
                // both (and first appear in the order they are bound).
                let party = filter.party.map(|_| (p.next(), p.next()));
                // `ends_at` bounds: (exclusive lower, inclusive upper).
                let bounds = filter.status.map(|(status, now, cooldown)| {
                    let cooled = now.saturating_sub(cooldown);
                    match status {
                        BindingStatus::Active => (Some(now), None),
                        BindingStatus::Cooling => (Some(cooled), Some(now)),
                        BindingStatus::Ended => (None, Some(cooled)),
                    }
                });
                let mut rest = String::new();
                if let Some((lower, upper)) = bounds {
                    if lower.is_some() {
                        rest.push_str(&format!(" AND ends_at > {}", p.next()));
                    }
                    if upper.is_some() {
                        rest.push_str(&format!(" AND ends_at <= {}", p.next()));
                    }
                }
                let mut sql = match &party {
                    None => format!("SELECT {BINDING_COLUMNS} FROM bindings WHERE {sql}{rest}"),
                    Some((t, u)) => format!(
                        "SELECT {BINDING_COLUMNS} FROM bindings{} WHERE {sql} \
                         AND a IN ({t}, {u}){rest} UNION ALL \
                         SELECT {BINDING_COLUMNS} FROM bindings{} WHERE {sql} \
                         AND b IN ({t}, {u}) AND a NOT IN ({t}, {u}){rest}",
                        $by_a, $by_b
                    ),
                };
                sql.push_str(&format!(" ORDER BY id {dir} LIMIT {}", p.next()));
                let mut q = sqlx::query(AssertSqlSafe(sql))
                    .bind($id(tenant.0))
                    .bind($id($crate::reads::start(page.after.map(|id| id.0), filter.newest_first)));
                if let Some(r) = &filter.external_ref {
                    q = q.bind(r.clone());
                }
                if let Some(party) = filter.party {
                    for token in self.keys.lookup_tokens(&party.to_string()) {
                        q = q.bind(token);
                    }
                }
                if let Some((lower, upper)) = bounds {
                    for bound in [lower, upper].into_iter().flatten() {
                        q = q.bind(bound);
                    }
                }
                let rows = q
                    .bind(i64::from(page.limit))
                    .fetch_all(&self.$pool)
                    .await?;
                rows.iter()
                    .map(|r| $crate::rows::binding(r, &self.keys))
                    .collect()
            }

            pub(crate) async fn read_calls(
                &self,
                tenant: TenantId,
                filter: &CallFilter,
                page: Page<CallId>,
            ) -> Result<Vec<CallRecord>> {
                // Built from fixed fragments only; every value is a bound
                // parameter. A binding's calls are few: its (tenant, binding,
                // id) index serves any filter. Otherwise, with `since`,
                // reading the window by time and sorting it beats walking the
                // tenant's whole history in id order to reach the window,
                // which is what SQLite's planner (no statistics) picks: a
                // client polling for new CDRs would get slower every day.
                let by_time = filter.binding.is_none() && filter.since.is_some();
                let hint = if by_time { $calls_by_time } else { "" };
                let mut p = $crate::reads::Params(2);
                let (cmp, dir) = $crate::reads::order(filter.newest_first);
                let mut sql = format!("tenant_id = $1 AND id {cmp} $2");
                if filter.binding.is_some() {
                    sql.push_str(&format!(" AND binding_id = {}", p.next()));
                }
                // As for bindings: a party is looked up as caller and as
                // callee, each branch with every other filter.
                let party = filter.party.map(|_| (p.next(), p.next()));
                let mut rest = String::new();
                if filter.since.is_some() {
                    rest.push_str(&format!(" AND invited_at >= {}", p.next()));
                }
                if filter.until.is_some() {
                    rest.push_str(&format!(" AND invited_at < {}", p.next()));
                }
                let mut sql = match &party {
                    None => format!("SELECT {CALL_COLUMNS} FROM calls{hint} WHERE {sql}{rest}"),
                    Some((t, u)) => format!(
                        "SELECT {CALL_COLUMNS} FROM calls{} WHERE {sql} \
                         AND caller IN ({t}, {u}){rest} UNION ALL \
                         SELECT {CALL_COLUMNS} FROM calls{} WHERE {sql} \
                         AND callee IN ({t}, {u}) \
                         AND (caller IS NULL OR caller NOT IN ({t}, {u})){rest}",
                        $by_caller, $by_callee
                    ),
                };
                sql.push_str(&format!(" ORDER BY id {dir} LIMIT {}", p.next()));
                let mut q = sqlx::query(AssertSqlSafe(sql))
                    .bind($id(tenant.0))
                    .bind($id($crate::reads::start(page.after.map(|id| id.0), filter.newest_first)));
                if let Some(b) = filter.binding {
                    q = q.bind($id(b.0));
                }
                if let Some(party) = filter.party {
                    for token in self.keys.lookup_tokens(&party.to_string()) {
                        q = q.bind(token);
                    }
                }
                if let Some(since) = filter.since {
                    q = q.bind(since);
                }
                if let Some(until) = filter.until {
                    q = q.bind(until);
                }
                let rows = q
                    .bind(i64::from(page.limit))
                    .fetch_all(&self.$pool)
                    .await?;
                rows.iter()
                    .map(|r| $crate::rows::call_record(r, &self.keys))
                    .collect()
            }

            pub(crate) async fn read_idempotency(
                &self,
                tenant: TenantId,
                key: &str,
            ) -> Result<Option<IdempotencyRecord>> {
                let row = sqlx::query(
                    "SELECT request_hash, status, body, created_at FROM idempotency \
                     WHERE tenant_id = $1 AND key = $2",
                )
                .bind($id(tenant.0))
                .bind(key)
                .fetch_optional(&self.$pool)
                .await?;
                row.map(|r| $crate::rows::idempotency(&r, &self.keys, tenant, key))
                    .transpose()
            }

            pub(crate) async fn read_webhooks(&self) -> Result<Vec<Webhook>> {
                let rows = sqlx::query(
                    "SELECT tenant_id, url, events, secret, intercept_url, intercept_fallback, \
                     intercept_timeout_ms, updated_at FROM webhooks ORDER BY tenant_id",
                )
                .fetch_all(&self.$pool)
                .await?;
                rows.iter()
                    .map(|r| $crate::rows::webhook(r, &self.keys))
                    .collect()
            }

            pub(crate) async fn read_event(
                &self,
                tenant: TenantId,
                id: EventId,
            ) -> Result<Option<StoredEvent>> {
                let sql = format!(
                    "SELECT {EVENT_COLUMNS} FROM events WHERE id = $1 AND tenant_id = $2"
                );
                let row = sqlx::query(AssertSqlSafe(sql))
                    .bind($id(id.0))
                    .bind($id(tenant.0))
                    .fetch_optional(&self.$pool)
                    .await?;
                row.as_ref()
                    .map(|r| $crate::rows::stored_event(r, &self.keys))
                    .transpose()
            }

            pub(crate) async fn read_recent_events(
                &self,
                tenant: TenantId,
                page: Page<i64>,
            ) -> Result<Vec<StoredEvent>> {
                let sql = format!(
                    "SELECT {EVENT_COLUMNS} FROM events WHERE tenant_id = $1 AND seq < $2 \
                     ORDER BY seq DESC LIMIT $3"
                );
                let rows = sqlx::query(AssertSqlSafe(sql))
                    .bind($id(tenant.0))
                    .bind(page.after.unwrap_or(i64::MAX))
                    .bind(i64::from(page.limit))
                    .fetch_all(&self.$pool)
                    .await?;
                rows.iter()
                    .map(|r| $crate::rows::stored_event(r, &self.keys))
                    .collect()
            }

            pub(crate) async fn read_activity(
                &self,
                tenant: TenantId,
                since: UnixMillis,
            ) -> Result<$crate::Activity> {
                let per_minute = |rows: Vec<(i64, i64)>| {
                    rows.into_iter()
                        .map(|(m, n)| (m, u64::try_from(n).unwrap_or(0)))
                        .collect::<Vec<_>>()
                };
                let calls: Vec<(i64, i64)> = sqlx::query_as(AssertSqlSafe(format!(
                    "SELECT invited_at / 60000 AS minute, COUNT(*) FROM calls{} \
                     WHERE tenant_id = $1 AND invited_at >= $2 GROUP BY minute ORDER BY minute",
                    $calls_by_time
                )))
                .bind($id(tenant.0))
                .bind(since)
                .fetch_all(&self.$pool)
                .await?;
                // Message ids are UUIDv7: their first 48 bits are the
                // arrival in milliseconds, so the (tenant, id) index bounds
                // the window.
                let first_id = $crate::reads::first_id_at(since);
                let texts: Vec<(i64, i64)> = sqlx::query_as(
                    "SELECT created_at / 60000 AS minute, COUNT(*) FROM messages \
                     WHERE tenant_id = $1 AND id >= $2 GROUP BY minute ORDER BY minute",
                )
                .bind($id(tenant.0))
                .bind($id(first_id))
                .fetch_all(&self.$pool)
                .await?;
                let pending: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM events WHERE tenant_id = $1 AND state = 'pending'",
                )
                .bind($id(tenant.0))
                .fetch_one(&self.$pool)
                .await?;
                Ok($crate::Activity {
                    calls: per_minute(calls),
                    texts: per_minute(texts),
                    pending_events: u64::try_from(pending).unwrap_or(0),
                })
            }

            pub(crate) async fn read_pending_events(&self) -> Result<u64> {
                let n: i64 =
                    sqlx::query_scalar("SELECT COUNT(*) FROM events WHERE state = 'pending'")
                        .fetch_one(&self.$pool)
                        .await?;
                Ok(u64::try_from(n).unwrap_or(0))
            }

            pub(crate) async fn read_message(
                &self,
                tenant: TenantId,
                id: MessageId,
            ) -> Result<Option<Message>> {
                let sql = format!(
                    "SELECT {} FROM messages WHERE id = $1 AND tenant_id = $2",
                    $crate::rows::MESSAGE_COLUMNS
                );
                let row = sqlx::query(AssertSqlSafe(sql))
                    .bind($id(id.0))
                    .bind($id(tenant.0))
                    .fetch_optional(&self.$pool)
                    .await?;
                row.as_ref()
                    .map(|r| $crate::rows::message(r, &self.keys))
                    .transpose()
            }

            pub(crate) async fn read_messages(
                &self,
                tenant: TenantId,
                filter: &MessageFilter,
                page: Page<MessageId>,
            ) -> Result<Vec<Message>> {
                // Built from fixed fragments only; every value is a bound
                // parameter.
                let mut p = $crate::reads::Params(2);
                let (cmp, dir) = $crate::reads::order(filter.newest_first);
                let mut sql = format!(
                    "SELECT {} FROM messages WHERE tenant_id = $1 AND id {cmp} $2",
                    $crate::rows::MESSAGE_COLUMNS
                );
                if filter.binding.is_some() {
                    sql.push_str(&format!(" AND binding_id = {}", p.next()));
                }
                if filter.status.is_some() {
                    sql.push_str(&format!(" AND status = {}", p.next()));
                }
                if filter.since.is_some() {
                    sql.push_str(&format!(" AND id >= {}", p.next()));
                }
                sql.push_str(&format!(" ORDER BY id {dir} LIMIT {}", p.next()));
                let mut q = sqlx::query(AssertSqlSafe(sql))
                    .bind($id(tenant.0))
                    .bind($id($crate::reads::start(page.after.map(|id| id.0), filter.newest_first)));
                if let Some(b) = filter.binding {
                    q = q.bind($id(b.0));
                }
                if let Some(st) = filter.status {
                    q = q.bind(st.as_str());
                }
                if let Some(since) = filter.since {
                    q = q.bind($id($crate::reads::first_id_at(since)));
                }
                let rows = q
                    .bind(i64::from(page.limit))
                    .fetch_all(&self.$pool)
                    .await?;
                rows.iter()
                    .map(|r| $crate::rows::message(r, &self.keys))
                    .collect()
            }

            pub(crate) async fn read_message_by_submit(
                &self,
                link: &str,
                smsc_id: &str,
            ) -> Result<Option<Message>> {
                let sql = format!(
                    "SELECT {} FROM messages WHERE id = \
                     (SELECT message_id FROM message_submits WHERE link = $1 AND smsc_id = $2)",
                    $crate::rows::MESSAGE_COLUMNS
                );
                let row = sqlx::query(AssertSqlSafe(sql))
                    .bind(link)
                    .bind(smsc_id)
                    .fetch_optional(&self.$pool)
                    .await?;
                row.as_ref()
                    .map(|r| $crate::rows::message(r, &self.keys))
                    .transpose()
            }

            pub(crate) async fn read_unmatched_receipts(&self, limit: u32) -> Result<Vec<Receipt>> {
                let rows: Vec<(String, String, bool, i64)> = sqlx::query_as(
                    "SELECT link, smsc_id, delivered, received_at FROM unmatched_receipts \
                     ORDER BY received_at LIMIT $1",
                )
                .bind(i64::from(limit))
                .fetch_all(&self.$pool)
                .await?;
                Ok(rows
                    .into_iter()
                    .map(|(link, smsc_id, delivered, received_at)| Receipt {
                        link,
                        smsc_id,
                        delivered,
                        received_at,
                    })
                    .collect())
            }

            pub(crate) async fn read_parts(&self, key: &PartsKey) -> Result<Vec<Part>> {
                let sql = format!(
                    "SELECT {} FROM message_parts \
                     WHERE x = $1 AND sender IN ($2, $3) AND reference = $4 ORDER BY seq",
                    $crate::rows::PART_COLUMNS
                );
                let [token, previous] = self.keys.lookup_tokens(&key.from.to_string());
                let rows = sqlx::query(AssertSqlSafe(sql))
                    .bind(key.x.to_string())
                    .bind(token)
                    .bind(previous)
                    .bind(<$reference>::from(key.reference))
                    .fetch_all(&self.$pool)
                    .await?;
                let mut parts = rows
                    .iter()
                    .map(|r| $crate::rows::part(r, &self.keys))
                    .collect::<Result<Vec<Part>>>()?;
                // A part the SMSC sent again across a rotation is stored
                // under both tokens: one of each number counts.
                parts.dedup_by_key(|p| p.seq);
                Ok(parts)
            }

            pub(crate) async fn read_stale_parts(
                &self,
                before: UnixMillis,
            ) -> Result<Vec<PartsKey>> {
                let rows = sqlx::query(
                    "SELECT x, sender, reference, MIN(sender_sealed) AS sender_sealed \
                     FROM message_parts GROUP BY x, sender, reference \
                     HAVING MIN(received_at) < $1",
                )
                .bind(before)
                .fetch_all(&self.$pool)
                .await?;
                let mut keys = Vec::with_capacity(rows.len());
                let mut seen = std::collections::HashSet::with_capacity(rows.len());
                for r in &rows {
                    let key = $crate::rows::parts_key(r, &self.keys)?;
                    // One text's parts under two tokens (a rotation came
                    // between them) are one text.
                    if seen.insert(key.clone()) {
                        keys.push(key);
                    }
                }
                Ok(keys)
            }

            pub(crate) async fn read_sms_settings(&self) -> Result<Vec<StoredSmsSettings>> {
                let rows =
                    sqlx::query("SELECT tenant_id, prefix, filter, updated_at FROM sms_settings")
                        .fetch_all(&self.$pool)
                        .await?;
                let mut out = Vec::with_capacity(rows.len());
                for r in &rows {
                    let tenant: $tenant_id = sqlx::Row::try_get(r, "tenant_id")?;
                    let rules: Vec<(String, String)> = sqlx::query_as(
                        "SELECT pattern, action FROM sms_rules WHERE tenant_id = $1 \
                         ORDER BY position",
                    )
                    .bind(tenant)
                    .fetch_all(&self.$pool)
                    .await?;
                    out.push($crate::rows::sms_settings(r, rules)?);
                }
                Ok(out)
            }

            pub(crate) async fn read_call_rules(&self) -> Result<Vec<$crate::StoredCallRules>> {
                let rows = sqlx::query(
                    "SELECT tenant_id, allow_prefixes, deny_prefixes, updated_at, \
                     max_concurrent_calls, max_calls_per_second FROM call_rules",
                )
                .fetch_all(&self.$pool)
                .await?;
                rows.iter().map($crate::rows::call_rules).collect()
            }

            pub(crate) async fn read_call_loads(
                &self,
                except: &str,
                since: UnixMillis,
            ) -> Result<Vec<maskline_core::TenantLoad>> {
                // SUM of integers is an integer in SQLite and a NUMERIC in
                // PostgreSQL: the cast makes both a 64-bit integer.
                let rows = sqlx::query(
                    "SELECT tenant_id, CAST(SUM(active) AS BIGINT) AS active, \
                     CAST(SUM(per_second) AS BIGINT) AS per_second \
                     FROM call_load WHERE node <> $1 AND at >= $2 GROUP BY tenant_id",
                )
                .bind(except)
                .bind(since)
                .fetch_all(&self.$pool)
                .await?;
                rows.iter().map($crate::rows::tenant_load).collect()
            }

            pub(crate) async fn read_tenant_limits(&self) -> Result<Vec<(TenantId, u32)>> {
                let rows = sqlx::query("SELECT tenant_id, rate_limit FROM tenant_limits")
                    .fetch_all(&self.$pool)
                    .await?;
                rows.iter().map($crate::rows::tenant_limit).collect()
            }

            pub(crate) async fn read_prompts(&self) -> Result<Vec<StoredPrompt>> {
                let rows =
                    sqlx::query("SELECT tenant_id, name, samples, updated_at FROM prompts")
                        .fetch_all(&self.$pool)
                        .await?;
                rows.iter().map($crate::rows::prompt).collect()
            }
        }
    };
}

pub(crate) use shared_reads;
