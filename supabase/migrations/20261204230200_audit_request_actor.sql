-- Who acted and from where, as the audit trail records it: the client's address taken from
-- the end of X-Forwarded-For that our own proxies wrote, and nothing the client sent (the
-- address chain, user agent, correlation id, path) bringing card data into the log.
--
-- The address was the first hop of X-Forwarded-For: whatever the client wrote there, since
-- each proxy appends the address it received the request from to what it was sent. With
-- `X-Forwarded-For: 198.51.100.7, <40 fake hops>, <real address>`, the log recorded the
-- spoofed first hop, and kept only the first 200 characters of the chain, which cut off the
-- real address that the gateway appended.
--
-- Now the address is read from the right: private.settings' trusted_proxy_hops says how many
-- addresses at the right-hand end our own proxies appended after the one that saw the
-- client, and the client's address is the next one to their left. It must be an address
-- (private.audit_address); when it is not, or when the chain is shorter than that, X-Real-IP
-- is read, then the connection's own address. The whole chain is kept in metadata, bounded
-- from the right (its hops nearest us, up to 1000 characters), its hops joined by " via " and
-- each cleaned of card data, with the number of hops the request brought.
-- docs/audit-trail.md says how to set the number of hops for Supabase's gateway.
--
-- What a request brings is searched for card data field by field, as stored; and what this
-- function keeps for the rest of the transaction (in settings any session can write) is
-- searched again when it is read back.

insert into private.settings (key, value, description)
values (
  'trusted_proxy_hops', '0',
  'How many addresses at the right-hand end of X-Forwarded-For our own proxies appended after '
  || 'the one that received the client''s connection: the audit trail records the address to '
  || 'their left as the client''s. 0 when the first proxy (on Supabase, Cloudflare) appends the '
  || 'client''s address last. See docs/audit-trail.md.'
);

alter table private.settings
add constraint settings_trusted_proxy_hops_is_a_count check (
  key <> 'trusted_proxy_hops' or (jsonb_typeof(value) = 'number' and value::text ~ '^(1?[0-9]|20)$')
);

/** The number of trusted proxy hops (private.settings, trusted_proxy_hops); 0 when unset. */
create function private.trusted_proxy_hops() returns integer
language sql
stable
security definer
set search_path = ''
as $$
  select coalesce(
    (select s.value::text::integer from private.settings as s where s.key = 'trusted_proxy_hops'),
    0
  )
$$;

/**
 * The X-Forwarded-For chain the audit trail keeps, from its hops: those at the right-hand end
 * (the end our proxies wrote) that fit in 1000 characters, in order, joined by " via " (a word,
 * so that no number runs from one hop into the next: a card number split across hops is no
 * card number in what is kept), each hop that holds card data written
 * "[removed: it held card data]". Null when no hop fits.
 */
create function private.forwarded_chain(hops text[]) returns text
language plpgsql
immutable
set search_path = ''
as $$
declare
  kept text;
  longer text;
begin
  if hops is null then
    return null;
  end if;
  for position in reverse cardinality(hops) .. 1 loop
    longer := concat_ws(' via ', private.without_card_numbers(hops[position]), kept);
    exit when length(longer) > 1000;
    kept := longer;
  end loop;
  return nullif(kept, '');
end
$$;

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
 * It is worked out once per request in a transaction and kept in two settings local to the
 * transaction (payguard.audit_request, the request's key, compared whole; payguard.audit_actor,
 * the actor); a change to users makes the next call work it out again. Settings can be written
 * by any session, so what is read back is searched for card data again, and worked out anew
 * when it holds some. It runs with its caller's rights: every caller is a security definer
 * function of the owner.
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
  scanned text;
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
    actor := current_setting('payguard.audit_actor')::private.audit_actor;
    scanned := concat_ws(
      ' x ', actor.user_role, actor.ip_address, actor.user_agent, actor.metadata::text
    );
    if scanned !~ coarse and scanned !~* '(cvv|cvc|cvn|csc|cav|cid|security|verification)' then
      return actor;
    end if;
    if not (
      coalesce(private.holds_card_number(actor.user_role), false)
      or coalesce(private.holds_card_number(actor.ip_address), false)
      or coalesce(private.holds_card_number(actor.user_agent), false)
      or coalesce(private.holds_card_data(actor.metadata), false)
    ) then
      return actor;
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
    'forwarded_for', nullif(chain, ip),
    'forwarded_hops', case when chain is distinct from ip then cardinality(hops) end,
    'db_role', coalesce(nullif(current_setting('role', true), 'none'), session_user::text),
    'transaction', pg_catalog.pg_current_xact_id()::text
  ));
  actor.user_role := coalesce(
    (select u.role::text from public.users as u where u.id = actor.user_id),
    actor.metadata ->> 'db_role'
  );
  -- Kept for the rest of the transaction (settings local to it, so that a rolled-back
  -- subtransaction forgets them too): the actor, then the request it is for.
  cached := set_config('payguard.audit_actor', actor::text, true);
  cached := set_config('payguard.audit_request', request_key, true);
  return actor;
end
$$;

revoke all on function private.trusted_proxy_hops() from public;
revoke all on function private.forwarded_chain(text[]) from public;
