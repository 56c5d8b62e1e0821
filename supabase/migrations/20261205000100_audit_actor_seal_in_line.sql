-- The actor's seal is made and checked in line, without a function of its own.
--
-- private.audit_actor keeps the actor for the rest of the transaction under an HMAC seal
-- (20261204235100_audit_actor_sealed). The seal was made by private.audit_actor_seal, a SQL
-- function: PostgreSQL plans a SQL function's body anew the first time each calling expression
-- runs in a transaction, so that call alone took about a third of working the actor out, on
-- every request. The release benchmark showed it: the audit trail's share of a release rose
-- above its 30% budget.
--
-- Now private.audit_actor reads the key itself, in the statement that reads the user's role
-- when it works the actor out (each statement that reads a table costs about as much again, the
-- first time in a transaction), and computes the same HMAC as an expression. What is sealed,
-- and with what key, is unchanged: the transaction's id, the request's key and the actor,
-- under private.audit_actor_key's secret, which only the owner reads. private.audit_actor runs
-- with its caller's rights and only the owner may execute it (every caller is a security
-- definer function of the owner), so the key is read as before, by the owner alone.
-- private.audit_actor_seal has no other caller and is dropped.

/**
 * Who is acting, from where: the JWT's user and their application role (else the database
 * role PostgREST switched to, or the login role); the client's address (X-Forwarded-For read
 * from the right, past private.trusted_proxy_hops() hops our proxies appended; else X-Real-IP;
 * else the connection's address; always an address, holding no card number); the user agent;
 * and the request's method, path, correlation id (X-Correlation-Id or X-Request-Id), the
 * X-Forwarded-For chain (private.forwarded_chain) and its number of hops when it says more
 * than the address, the database role and the transaction id. Every field a request brings
 * holds no card data: one that does is "[removed: it held card data]".
 *
 * It is worked out once per request in a transaction and kept in three settings local to the
 * transaction (payguard.audit_request, the request's key, compared whole; payguard.audit_actor,
 * the actor; payguard.audit_seal, an HMAC of the transaction's id and both under
 * private.audit_actor_key's secret); a change to users makes
 * the next call work it out again. Settings can be written by any session: an actor is read
 * back only when its seal, which only the owner can make, is the one for this request and
 * transaction; else it is worked out anew. It runs with its caller's rights: every caller is a
 * security definer function of the owner.
 */
create or replace function private.audit_actor() returns private.audit_actor
language plpgsql
stable
set search_path = ''
as $$
declare
  request_key text := concat_ws(
    e'\x1f', current_setting('role', true), current_setting('request.jwt.claims', true),
    current_setting('request.jwt.claim.sub', true), current_setting('request.headers', true),
    current_setting('request.method', true), current_setting('request.path', true),
    session_user::text
  );
  cached text := current_setting('payguard.audit_request', true);
  -- private.may_hold_card_number's coarser expression, in line (see its comment)
  coarse constant text := '[^\x01-\x2f\x3a-\x7f](?:(?:[^A-Za-z0-9]|\\(?:[bfnrt]|u[0-9a-fA-F]{4}))*'
    || '[^\x01-\x2f\x3a-\x7f]){12}';
  kept text;
  key bytea;
  headers jsonb;
  hops text [];
  trusted integer;
  chain text;
  ip text;
  correlation_id text;
  request_method text;
  request_path text;
  actor private.audit_actor;
begin
  if cached = request_key then
    kept := current_setting('payguard.audit_actor', true);
    -- Only an actor this function kept, for this request in this transaction, is read back.
    select k.secret into key from private.audit_actor_key as k;
    if current_setting('payguard.audit_seal', true) = encode(extensions.hmac(
      convert_to(concat_ws(e'\x1f', pg_catalog.pg_current_xact_id()::text, request_key, kept), 'UTF8'),
      key, 'sha256'
    ), 'hex') then
      return kept::private.audit_actor;
    end if;
  end if;
  headers := coalesce(nullif(current_setting('request.headers', true), '')::jsonb, '{}');
  if headers ->> 'x-forwarded-for' is not null then
    hops := regexp_split_to_array(btrim(headers ->> 'x-forwarded-for'), '\s*,\s*');
    trusted := private.trusted_proxy_hops();
    if cardinality(hops) > trusted then
      ip := private.audit_address(hops[cardinality(hops) - trusted]);
    end if;
    chain := private.forwarded_chain(hops);
  end if;
  if ip is null and headers ? 'x-real-ip' then
    ip := private.audit_address(headers ->> 'x-real-ip');
  end if;
  if ip is null and inet_client_addr() is not null then
    ip := private.audit_address(inet_client_addr());
  end if;
  actor.user_id := auth.uid();
  actor.ip_address := ip;
  actor.user_agent := headers ->> 'user-agent';
  correlation_id := coalesce(headers ->> 'x-correlation-id', headers ->> 'x-request-id');
  request_method := nullif(current_setting('request.method', true), '');
  request_path := nullif(current_setting('request.path', true), '');
  -- What the client sent never brings a card number into the log.
  if concat_ws(' x ', actor.user_agent, correlation_id, request_method, request_path) ~ coarse then
    actor.user_agent := private.without_card_numbers(actor.user_agent);
    correlation_id := private.without_card_numbers(correlation_id);
    request_method := private.without_card_numbers(request_method);
    request_path := private.without_card_numbers(request_path);
  end if;
  actor.metadata := jsonb_strip_nulls(jsonb_build_object(
    'method', request_method,
    'path', request_path,
    'correlation_id', correlation_id,
    'forwarded_for', case when cardinality(hops) > 1 or chain is distinct from ip then chain end,
    'forwarded_hops',
    case when cardinality(hops) > 1 or chain is distinct from ip then cardinality(hops) end,
    'db_role', coalesce(nullif(current_setting('role', true), 'none'), session_user::text),
    'transaction', pg_catalog.pg_current_xact_id()::text
  ));
  -- One statement reads both the user's role and the seal's key.
  select coalesce(u.role::text, actor.metadata ->> 'db_role'), k.secret
  into actor.user_role, key
  from private.audit_actor_key as k
  left join public.users as u on u.id = actor.user_id;
  -- Kept for the rest of the transaction (settings local to it, so that a rolled-back
  -- subtransaction forgets them too): the actor, then the request it is for.
  kept := set_config('payguard.audit_actor', actor::text, true);
  cached := set_config('payguard.audit_seal', encode(extensions.hmac(
    convert_to(concat_ws(e'\x1f', pg_catalog.pg_current_xact_id()::text, request_key, kept), 'UTF8'),
    key, 'sha256'
  ), 'hex'), true);
  cached := set_config('payguard.audit_request', request_key, true);
  return actor;
end
$$;

drop function private.audit_actor_seal(text, text);
