-- The actor kept for a transaction cannot be forged.
--
-- private.audit_actor works out who is acting and from where once per request and keeps it,
-- for the rest of the transaction, in settings (payguard.audit_actor under the request's key,
-- payguard.audit_request). Any session can write those settings, and a direct connection as
-- `authenticated` can work out the key from settings it can read: it wrote an actor naming
-- another user, the admin role and any address, and every audit row its writes made recorded
-- them (the read-back check searched the forged actor for card data only). The client's
-- address, the user and the role in the log were the client's to choose.
--
-- Now the actor is kept with a seal: an HMAC (SHA-256) of the transaction's id, the request's
-- key and the actor, under a key made at random in this migration and readable by the owner
-- alone (private.audit_actor_key). An actor is read back only under its seal; one whose seal
-- does not match is worked out anew from the request.
--
-- And a chain of several hops is always said to be one, with its number of hops: a hop too
-- long to keep (a client's 2,000 characters before the gateway's address) left only the
-- address in what was kept, and the log said nothing of the chain.

create table private.audit_actor_key (
  id boolean primary key default true check (id),
  secret bytea not null default extensions.gen_random_bytes(32)
);
insert into private.audit_actor_key default values;
revoke all on private.audit_actor_key from public;

/**
 * The seal of the actor `actor` kept for the request `request_key` in this transaction: an
 * HMAC under private.audit_actor_key's secret, which no API role can read, so no session
 * but the owner's functions can make one. Security definer so that it reads the key whoever
 * calls private.audit_actor.
 */
create function private.audit_actor_seal(request_key text, actor text) returns text
language sql
stable
security definer
set search_path = ''
as $$
  select encode(
    extensions.hmac(
      convert_to(concat_ws(e'\x1f', pg_catalog.pg_current_xact_id()::text, request_key, actor), 'UTF8'),
      k.secret,
      'sha256'
    ),
    'hex'
  )
  from private.audit_actor_key as k
$$;

revoke all on function private.audit_actor_seal(text, text) from public;

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
 * the actor; payguard.audit_seal, private.audit_actor_seal of both); a change to users makes
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
    if current_setting('payguard.audit_seal', true) = private.audit_actor_seal(request_key, kept)
    then
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
  if ip is null then
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
  actor.user_role := coalesce(
    (select u.role::text from public.users as u where u.id = actor.user_id),
    actor.metadata ->> 'db_role'
  );
  -- Kept for the rest of the transaction (settings local to it, so that a rolled-back
  -- subtransaction forgets them too): the actor, then the request it is for.
  kept := set_config('payguard.audit_actor', actor::text, true);
  cached := set_config('payguard.audit_seal', private.audit_actor_seal(request_key, kept), true);
  cached := set_config('payguard.audit_request', request_key, true);
  return actor;
end
$$;
