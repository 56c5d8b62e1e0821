-- No card data reaches the audit trail, whatever path writes a row: a refused call's
-- parameters (a card number with tabs between its groups), the request's headers (user
-- agent, correlation id, path), the address, rows the capture triggers copy (a value stored
-- before the guard knew its form), rows a trigger inserts, rows the owner inserts, and what
-- the actor's cache in the transaction's settings says. What held card data is
-- "[removed: it held card data]"; the rest of each row is kept.
begin;
select plan(21);

select tests.let_roles_call_pgtap();

-- fixtures, as postgres: hana's kitchen, built by carl, with one funded payment
select tests.create_supabase_user('hana');
select tests.create_supabase_user('carl', metadata => '{"role": "contractor"}');
update private.settings set value = '{"time_zone": "UTC", "from": 0, "to": 24}'
where key = 'business_hours';
select tests.create_project_with_milestones(
  'hana',
  'carl',
  amounts => array[40000],
  titles => array['Cabinets'],
  project_id => '10000000-0000-0000-0000-000000000001'
);
select tests.set_milestone_payment_status('30000000-0000-0000-0000-000000000001', 'funded');
-- and a pending one, which no one can dispute yet: calls about it are refused
insert into public.project_milestones (id, project_id, position, title, amount_minor, currency)
values ('20000000-0000-0000-0000-000000000002', '10000000-0000-0000-0000-000000000001', 2,
  'Counters', 30000, 'USD');
insert into public.milestone_payments (id, milestone_id, payer_id)
values ('30000000-0000-0000-0000-000000000002', '20000000-0000-0000-0000-000000000002',
  tests.get_supabase_uid('hana'));

/** Remember the audit log's highest seq: what comes next lies above it. */
create function tests.mark() returns void
language sql
as $$
  select set_config(
    'fixture.mark', (select coalesce(max(l.seq), 0) from public.payment_audit_logs as l)::text,
    true
  )
$$;

/** Every audit row since the mark, as jsonb (hashes aside). */
create function tests.audited_since_mark() returns setof jsonb
language sql
as $$
  select to_jsonb(l) - '{prev_hash,row_hash,seq,id,timestamp}'::text[]
  from public.payment_audit_logs as l
  where l.seq > current_setting('fixture.mark')::bigint
  order by l.seq
$$;

/**
 * True when a row of the log since the mark holds the digits of a card number these tests
 * write, in any script and whatever is between them.
 */
create function tests.log_holds_card_digits() returns boolean
language sql
as $$
  select exists (
    select from tests.audited_since_mark() as row_values
    where regexp_replace(private.card_digits(row_values::text), '[^0-9]', '', 'g')
      ~ '4242424242424242|4111111111111111|5555555555554444'
  )
$$;

-- 1. a refused call: a card number with tabs and newlines between its groups
select tests.mark();
select tests.authenticate_as(
  'hana', headers => '{"x-forwarded-for": "198.51.100.23", "user-agent": "supabase-js/2.45.0", "x-request-id": "req-1"}'
);
select is(
  public.open_dispute(
    '30000000-0000-0000-0000-000000000001', e'card 4242\t4242\n4242\t4242 was charged twice', 'key-1'
  ) ->> 'message',
  'card number in disputes.reason: store the processor''s token (pm_…) instead',
  'the guard refuses a dispute whose reason holds a card number written with tabs'
);
reset role;
select results_eq(
  $$select r ->> 'operation', (r ->> 'success')::boolean, r ->> 'error_message', r ->> 'ip_address',
      r ->> 'user_agent', r -> 'new_values'
    from tests.audited_since_mark() as r$$,
  $$values ('open_dispute', false,
    'card number in disputes.reason: store the processor''s token (pm_…) instead', '198.51.100.23',
    'supabase-js/2.45.0',
    '{"milestone_payment_id": "30000000-0000-0000-0000-000000000001",
      "reason": "[removed: it held card data]"}'::jsonb)$$,
  'its audit row records the refusal with the reason removed, and the rest of what was asked'
);

-- the other forms of the issue, in the same parameter
select tests.mark();
select tests.authenticate_as('hana');
select public.open_dispute('30000000-0000-0000-0000-000000000001', reason, 'key-' || n)
from unnest(array[
  e'4242\u20134242\u20134242\u20134242', e'4242\u200b4242\u200b4242\u200b4242', '4242/4242/4242/4242',
  '٤٢٤٢ ٤٢٤٢ ٤٢٤٢ ٤٢٤٢', e'4111\r\n1111\r\n1111\r\n1111'
]) with ordinality as a (reason, n);
reset role;
select results_eq(
  $$select count(*)::int, count(*) filter (where r -> 'new_values' ->> 'reason' = '[removed: it held card data]')::int
    from tests.audited_since_mark() as r$$,
  $$values (5, 5)$$,
  'other dashes, zero-width characters, slashes, other digits: each refusal''s reason is removed'
);
select ok(not tests.log_holds_card_digits(), 'no row of the log holds those digits, in any form');

-- a refusal with nothing to remove keeps what was asked
select tests.mark();
select tests.authenticate_as('hana');
select public.open_dispute('30000000-0000-0000-0000-000000000002', 'tiles cracked on 2024-12-04 (photo 3)', 'key-7');
reset role;
select is(
  (select r -> 'new_values' ->> 'reason' from tests.audited_since_mark() as r),
  'tiles cracked on 2024-12-04 (photo 3)',
  'a refused call''s reason that holds no card number is kept as it was'
);

-- 2. what the request brings: correlation id, request id, user agent, path
select tests.mark();
select tests.authenticate_as(
  'hana', aal => 'aal2', method => 'PATCH', path => e'/rest/v1/users?note=4111\t1111\t1111\t1111',
  headers => jsonb_build_object(
    'X-Correlation-Id', '4242-4242-4242-4242', 'User-Agent', e'curl/8.5 (5555\u20135555\u20135555\u20134444)',
    'X-Forwarded-For', '203.0.113.9'
  )
);
update public.users set full_name = 'Hana Okafor' where id = tests.get_supabase_uid('hana');
reset role;
select results_eq(
  $$select r ->> 'user_agent', r -> 'metadata' ->> 'correlation_id', r -> 'metadata' ->> 'path',
      r ->> 'ip_address', r -> 'new_values' ->> 'full_name'
    from tests.audited_since_mark() as r$$,
  $$values ('[removed: it held card data]', '[removed: it held card data]',
    '[removed: it held card data]', '203.0.113.9',
    private.audit_fingerprint(tests.get_supabase_uid('hana'), 'full_name', 'Hana Okafor'))$$,
  'a change''s audit row: the user agent, correlation id and path that held card numbers are removed'
);
select tests.mark();
select tests.authenticate_as(
  'hana', headers => '{"x-request-id": "4111 1111 1111 1111", "user-agent": "supabase-js/2.45.0"}'
);
select public.open_dispute('30000000-0000-0000-0000-000000000002', 'not yet', 'key-8');
reset role;
select results_eq(
  $$select r -> 'metadata' ->> 'correlation_id', r ->> 'user_agent' from tests.audited_since_mark() as r$$,
  $$values ('[removed: it held card data]', 'supabase-js/2.45.0')$$,
  'a refusal''s audit row: the request id that held a card number is removed, the user agent kept'
);
select ok(not tests.log_holds_card_digits(), 'and no row holds those digits');

-- 3. the address: a forwarded "address" that is a card number, an address that holds one
select tests.mark();
select tests.authenticate_as('hana', headers => '{"x-forwarded-for": "4242424242424242::1"}');
update public.users set full_name = 'Hana O.' where id = tests.get_supabase_uid('hana');
select tests.authenticate_as('hana', headers => '{"x-forwarded-for": "10.0.0.1, 4242:4242:4242:4242::"}');
update public.users set full_name = 'Hana Ok.' where id = tests.get_supabase_uid('hana');
reset role;
select results_eq(
  $$select r ->> 'ip_address', r -> 'metadata' ->> 'forwarded_for' from tests.audited_since_mark() as r$$,
  $$values (null::text, '[removed: it held card data]'),
    ('4242:4242:4242::', '10.0.0.1 via [removed: it held card data]')$$,
  'a card number shaped like an address is no address; a real address holding one is kept as '
  'its /48 network; in the chain, each is removed'
);
select tests.mark();
select tests.authenticate_as(
  'hana', headers => '{"x-forwarded-for": "42.42.42.42, 42.42.42.42, 198.51.100.9"}'
);
update public.users set full_name = 'Hana Oka.' where id = tests.get_supabase_uid('hana');
reset role;
select results_eq(
  $$select r ->> 'ip_address', r -> 'metadata' ->> 'forwarded_for', (r -> 'metadata' ->> 'forwarded_hops')::int,
      private.holds_card_number(r -> 'metadata' ->> 'forwarded_for')
    from tests.audited_since_mark() as r$$,
  $$values ('198.51.100.9', '42.42.42.42 via 42.42.42.42 via 198.51.100.9', 3, false)$$,
  'a card number split across the hops of the chain: the hops are kept, joined so that it is none'
);

-- 4. rows the capture triggers copy: a value stored before the guard read its form
alter table public.projects disable trigger refuse_card_data;
update public.projects set description = e'old note: 4242\u20134242\u20134242\u20134242'
where id = '10000000-0000-0000-0000-000000000001';
alter table public.projects enable trigger refuse_card_data;
select tests.mark();
select tests.authenticate_as('hana');
update public.projects set title = 'Kitchen and pantry' where id = '10000000-0000-0000-0000-000000000001';
reset role;
select results_eq(
  $$select r -> 'old_values' ->> 'description', r -> 'new_values' ->> 'description',
      r -> 'old_values' ->> 'title', r -> 'new_values' ->> 'title'
    from tests.audited_since_mark() as r$$,
  $$values ('[removed: it held card data]', '[removed: it held card data]', 'Kitchen remodel',
    'Kitchen and pantry')$$,
  'an update of a row that holds card data: the capture removes it from the old and new values'
);
select ok(not tests.log_holds_card_digits(), 'the captured row holds none of its digits');

-- 5. rows a trigger inserts (trigger depth 1), and rows the owner inserts (depth 0)
create table tests.probe (id int);
create function tests.write_refusal_row() returns trigger
language plpgsql
as $$
begin
  insert into public.payment_audit_logs (
    operation, entity_type, entity_id, user_role, ip_address, user_agent, success,
    error_message, old_values, new_values, metadata
  )
  values (
    e'op 4242\t4242\t4242\t4242', 'probe', '4242 4242 4242 4242', '4242-4242-4242-4242',
    '4242:4242:4242:4242::', '4242/4242/4242/4242', false, e'4242\u20134242\u20134242\u20134242',
    '{"x": ["4242", "4242", "4242", "4242"]}', jsonb_build_object(e'4242\u200b4242\u200b4242\u200b4242', 1),
    '{"cvv": "123", "id": "keep"}'
  );
  return null;
end
$$;
create trigger write_refusal_row after insert on tests.probe
for each row execute function tests.write_refusal_row();
select tests.mark();
insert into tests.probe values (1);
select is(
  (select r - '{user_id,timestamp}'::text[] from tests.audited_since_mark() as r),
  jsonb_build_object(
    'operation', '[removed: it held card data]', 'entity_type', 'probe',
    'entity_id', '[removed: it held card data]', 'user_role', '[removed: it held card data]',
    'ip_address', '4242:4242:4242::', 'user_agent', '[removed: it held card data]',
    'success', false, 'error_message', '[removed: it held card data]',
    'old_values', '{"x": "[removed: it held card data]"}'::jsonb,
    'new_values', '{"[removed: it held card data]": "[removed: it held card data]"}'::jsonb,
    'metadata', '{"cvv": "[removed: it held card data]", "id": "keep"}'::jsonb
  ),
  'a refusal row a trigger inserts is stamped: every column cleaned of card data'
);
select tests.mark();
insert into public.payment_audit_logs (
  operation, entity_type, entity_id, user_role, ip_address, user_agent, success, old_values,
  new_values, metadata
)
values (
  'INSERT', 'projects', '5555 5555 5555 4444', 'postgres', '203.0.113.7', 'psql', true,
  null, '{"description": "4111 1111 1111 1111", "title": "kept"}', '{"note": "kept"}'
);
select results_eq(
  $$select r ->> 'entity_id', r ->> 'ip_address', r -> 'new_values', r -> 'metadata'
    from tests.audited_since_mark() as r$$,
  $$values ('[removed: it held card data]', '203.0.113.7',
    '{"description": "[removed: it held card data]", "title": "kept"}'::jsonb, '{"note": "kept"}'::jsonb)$$,
  'a row the owner inserts, success or not, is cleaned of card data, and keeps the rest'
);

-- 6. what the transaction's settings say about the actor is searched again when read back
select tests.mark();
select tests.authenticate_as('hana', headers => '{"user-agent": "app/1.0"}');
update public.users set full_name = 'Hana A' where id = tests.get_supabase_uid('hana');
select set_config(
  'payguard.audit_actor',
  regexp_replace(current_setting('payguard.audit_actor'), 'app/1\.0', 'forged 4242 4242 4242 4242'),
  true
);
update public.users set full_name = 'Hana B' where id = tests.get_supabase_uid('hana');
reset role;
select results_eq(
  $$select r ->> 'user_agent' from tests.audited_since_mark() as r$$,
  $$values ('app/1.0'), ('app/1.0')$$,
  'a cached actor rewritten to hold a card number is worked out again from the request'
);

-- 7. the capture's rows hold an address or none: a row written past the stamp is checked too
create function tests.write_captured_row() returns trigger
language plpgsql
as $$
begin
  insert into public.payment_audit_logs (
    seq, timestamp, operation, entity_type, entity_id, user_role, ip_address, success
  )
  values (nextval('private.audit_log_seq'), now(), 'INSERT', 'probe', '1', 'postgres', 'not-an-address', true);
  return null;
end
$$;
create table tests.probe2 (id int);
create trigger write_captured_row after insert on tests.probe2
for each row execute function tests.write_captured_row();
select throws_ok(
  $$insert into tests.probe2 values (1)$$,
  '23514', null,
  'a row that holds something other than an address in ip_address is refused, however it is written'
);

-- 8. the notifications and the security alerts, which requests also write, refuse card data
select throws_ok(
  format($$insert into public.security_alerts (kind, user_id, operation, details)
    values ('velocity_limit', %L, 'open_dispute', %L)$$,
    tests.get_supabase_uid('hana'), jsonb_build_object('message', e'4242\t4242\t4242\t4242')),
  'PT422', 'card number in security_alerts.details: store the processor''s token (pm_…) instead',
  'a security alert whose details hold a card number is refused'
);
select throws_ok(
  format($$insert into public.notifications (user_id, event, title)
    values (%L, 'milestone_payment.released', %L)$$,
    tests.get_supabase_uid('hana'), e'Paid from 4242\u20134242\u20134242\u20134242'),
  'PT422', 'card number in notifications.title: store the processor''s token (pm_…) instead',
  'a notification whose title holds a card number is refused'
);

-- 9. the functions that write the log are these, and each removes card data as above: a new
-- one must be added here once it does too
select results_eq(
  $$select p.oid::regprocedure::text from pg_proc as p
    where p.prosrc ~* 'insert\s+into\s+public\.payment_audit_logs'
      and p.pronamespace = 'private'::regnamespace
    order by 1$$,
  $$values ('private.capture_audit_inserts()'), ('private.capture_audit_row()'),
    ('private.capture_audit_updates()'), ('private.erase_user(uuid,text)'),
    ('private.purge_audit_logs()'), ('private.purge_closed_records()'),
    ('private.refused_call(text,text,text,jsonb,text,text,text,text)')$$,
  'only the capture triggers, the erasure of a user, the retention purges and the refusals write the log'
);
select is(
  (select pg_get_triggerdef(t.oid) from pg_trigger as t
    where t.tgrelid = 'public.payment_audit_logs'::regclass and t.tgname = 'stamp_audit_log_row'),
  'CREATE TRIGGER stamp_audit_log_row BEFORE INSERT ON public.payment_audit_logs FOR EACH ROW '
  'WHEN (((pg_trigger_depth() = 0) OR (NOT new.success))) EXECUTE FUNCTION private.stamp_audit_log_row()',
  'the stamp cleans every row but the capture''s own, which the capture cleans'
);

-- 10. what holds no card data is kept
select tests.mark();
select tests.authenticate_as(
  'carl', headers => '{"x-forwarded-for": "198.51.100.77", "user-agent": "payguard-ios/2.3 (build 20241204)", "x-correlation-id": "order 112-4567890-12"}'
);
select public.open_dispute('30000000-0000-0000-0000-000000000002', 'wrong colour', 'key-9');
reset role;
select results_eq(
  $$select r ->> 'ip_address', r ->> 'user_agent', r -> 'metadata' ->> 'correlation_id'
    from tests.audited_since_mark() as r$$,
  $$values ('198.51.100.77', 'payguard-ios/2.3 (build 20241204)', 'order 112-4567890-12')$$,
  'an address, a user agent and a correlation id that hold no card number are kept as sent'
);

select * from finish();
rollback;
