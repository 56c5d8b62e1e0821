-- The audit actor's cache, cheaper to read. private.audit_actor() keeps who is acting for
-- the rest of a request's transaction, and each audited statement after the first reads it
-- back. It was kept as one setting, the request's key and the actor together, and every read
-- built the key plus a separator, compared it with the start of the setting and cut the
-- actor out of it by character positions: several passes over a kilobyte of text (the
-- request's headers and claims are part of the key), at each of a release's four audited
-- statements. The key and the actor are now two settings, and a read compares the key whole.
-- Storing them is an assignment rather than a PERFORM, which ran a query for it.
-- What is recorded does not change.

/**
 * Who is acting, from where: as in 20261126100000_audit_capture_cost.sql, with the request's
 * key and its actor kept in two settings (payguard.audit_request, payguard.audit_actor). A
 * change to users still makes the next call work the actor out again
 * (private.forget_audit_actor() empties the key). It runs with its caller's rights: every
 * caller is a security definer function of the owner.
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
  headers jsonb;
  first_hop text;
  ip text;
  actor private.audit_actor;
begin
  -- Worked out already for this request: the key is compared whole.
  if cached = request_key then
    return current_setting('payguard.audit_actor')::private.audit_actor;
  end if;
  headers := coalesce(nullif(current_setting('request.headers', true), '')::jsonb, '{}');
  first_hop := nullif(btrim(split_part(headers ->> 'x-forwarded-for', ',', 1)), '');
  if first_hop is not null and private.looks_like_ip(first_hop) then
    ip := first_hop;
  elsif headers ? 'x-real-ip' and private.looks_like_ip(btrim(headers ->> 'x-real-ip')) then
    ip := btrim(headers ->> 'x-real-ip');
  else
    ip := host(inet_client_addr());
  end if;
  actor.user_id := auth.uid();
  actor.ip_address := ip;
  actor.user_agent := headers ->> 'user-agent';
  actor.metadata := jsonb_strip_nulls(jsonb_build_object(
    'method', nullif(current_setting('request.method', true), ''),
    'path', nullif(current_setting('request.path', true), ''),
    'correlation_id', coalesce(headers ->> 'x-correlation-id', headers ->> 'x-request-id'),
    'forwarded_for', nullif(left(headers ->> 'x-forwarded-for', 200), ip),
    'db_role', coalesce(nullif(current_setting('role', true), 'none'), session_user::text),
    'transaction', pg_catalog.pg_current_xact_id()::text
  ));
  -- What the client sent never brings a card number into the log.
  if private.holds_card_number(concat_ws(' ', actor.user_agent, actor.metadata::text)) then
    actor.user_agent := private.without_card_numbers(actor.user_agent);
    actor.metadata := private.without_card_data(actor.metadata);
  end if;
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
