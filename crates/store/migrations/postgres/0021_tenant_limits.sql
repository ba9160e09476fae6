-- A tenant's own API rate (PATCH /v1/tenants/{id} {"rate_limit"}): requests
-- a second, 0 for none. A tenant without a row has MASKLINE_RATE_LIMIT.
CREATE TABLE tenant_limits (
    tenant_id  UUID PRIMARY KEY REFERENCES tenants (id),
    rate_limit BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
