-- The schema for what app clients must never call or read directly: security-definer
-- helpers, the ledger, settings and counters. It is not in `pgrst.db_schemas`, and no API
-- role may even look up names in it.

create schema private;

revoke all on schema private from public;

comment on schema private is
'Internal objects of payguard: never exposed through the API. Functions here that run as '
'security definer set search_path to the empty string and qualify every name.';
