-- Attacks on card data and the client's address (classes 1, 2 and 4), both ways.
-- - A card number written with digits joined to a UUID's or a timestamp's shape, before or
--   after it, is found: the shape is read apart only when it stands apart from digits. A
--   UUID or a timestamp standing alone (the values the database writes) still is not one.
-- - The actor kept for a transaction (payguard.audit_actor, payguard.audit_request: settings
--   any session can write) cannot be forged: a direct connection as `authenticated` that
--   writes them records neither another user, another role nor another address.
-- - A key naming a card verification code is found with separators, zero-width characters,
--   JSON escapes or full-width letters in it; keys that only look alike are kept.
-- - A chain of several hops is recorded as one, with its number of hops, even when the hops
--   the client wrote are too long to keep.
-- - A refused call whose argument and headers hold a card number behind a timestamp is
--   recorded, and no value of the rows it writes holds card data.
-- - The decimal digits of Unicode 15 and 16 are digits.
begin;
select plan(29);

-- fixtures, as postgres
select tests.create_supabase_user('hana');
select tests.create_supabase_user('ivan');
select tests.create_supabase_user('carl', metadata => '{"role": "contractor"}');
update private.settings set value = '{"time_zone": "UTC", "from": 0, "to": 24}'
where key = 'business_hours';
select tests.create_project_with_milestones(
  'hana',
  'carl',
  amounts => array[40000],
  titles => array['Cabinets']
);

-- the guard: a card number behind a shape (4242 2024 0101 1202 and others pass Luhn)
select ok(
  private.holds_card_number(hidden),
  'a card number whose digits run into a ' || how || ' is found'
)
from (
  values
  ('4242 2024-01-01 12:02', 'timestamp written after them'),
  ('42422024-01-01 12:02', 'timestamp written right after them'),
  (U&'\0664\0662\0664\0662 2024-01-01 12:02', 'timestamp, in Arabic-Indic digits'),
  (U&'4242\200B\00A0\00A0\00A0\200B2024-01-01 12:02', 'timestamp, past white space and zero-width characters'),
  ('2024-01-01 22:21:00 1234567813', 'timestamp, starting in its hour'),
  ('4242 42424242-4242-aaaa-aaaa-aaaaaaaaaaaa', 'UUID written after them')
) as c (hidden, how);

select ok(
  not private.holds_card_number(standing),
  'a ' || what || ' is no card number'
)
from (
  values
  ('2026-12-04T23:59:59.411111+00:00', 'timestamp as JSON writes it'),
  ('2026-12-04 23:59:59.411111+00', 'timestamp as PostgreSQL writes it'),
  ('12345678-1234-1234-1234-123456789012', 'UUID of digits only'),
  ('paid 2026-12-04 23:59:59+00 for 12345678-1234-1234-1234-123456789012', 'timestamp and a UUID in words')
) as c (standing, what);

-- the same through the API: hana's name with a card number behind a timestamp is refused
select tests.authenticate_as('hana');
select throws_ok(
  format(
    $$update public.users set full_name = 'Hana 4242 2024-01-01 12:02' where id = %L$$,
    tests.get_supabase_uid('hana')
  ),
  'PT422', 'card number in users.full_name: store the processor''s token (pm_…) instead',
  'a card number behind a timestamp in a user''s name is refused'
);
select lives_ok(
  format(
    $$update public.users set full_name = 'Hana, since 2024-01-01 12:02' where id = %L$$,
    tests.get_supabase_uid('hana')
  ),
  'a timestamp standing alone in a user''s name is kept'
);
select throws_ok(
  format(
    $$update public.users set full_name = %L where id = %L$$,
    'Hana ' || translate('4242 4242 4242 4242', '0123456789', U&'\+01E4F0\+01E4F1\+01E4F2\+01E4F3\+01E4F4\+01E4F5\+01E4F6\+01E4F7\+01E4F8\+01E4F9'),
    tests.get_supabase_uid('hana')
  ),
  'PT422', 'card number in users.full_name: store the processor''s token (pm_…) instead',
  'a card number in Nag Mundari digits (Unicode 15) in a user''s name is refused'
);
select lives_ok(
  format(
    $$update public.users set full_name = %L where id = %L$$,
    'Hana ' || translate('2026', '0123456789', U&'\+01E4F0\+01E4F1\+01E4F2\+01E4F3\+01E4F4\+01E4F5\+01E4F6\+01E4F7\+01E4F8\+01E4F9'),
    tests.get_supabase_uid('hana')
  ),
  'a year in Nag Mundari digits in a user''s name is kept'
);
select set_config('role', 'none', true);

-- the actor forged on a direct connection as hana: the key it is kept under, worked out from
-- what hana can read, and an actor naming ivan, as admin, from another address
select set_config('fixture.mark', (select coalesce(max(seq), 0) from public.payment_audit_logs)::text, true);
select tests.authenticate_as('hana', headers => '{"x-forwarded-for": "203.0.113.9", "user-agent": "app/1"}');
select set_config(
  'payguard.audit_request',
  concat_ws(
    e'\x1f', current_setting('role', true), current_setting('request.jwt.claims', true),
    current_setting('request.jwt.claim.sub', true), current_setting('request.headers', true),
    current_setting('request.method', true), current_setting('request.path', true),
    session_user::text
  ),
  true
);
select set_config(
  'payguard.audit_actor',
  row(tests.get_supabase_uid('ivan'), 'admin', '198.51.100.66', 'forged', '{"db_role": "admin"}'::jsonb)::text,
  true
);
update public.users set full_name = 'Hana H' where id = tests.get_supabase_uid('hana');
select set_config('role', 'none', true);
select results_eq(
  $$select l.user_id, l.user_role::text, l.ip_address::text, l.user_agent
    from public.payment_audit_logs as l
    where l.seq > current_setting('fixture.mark')::bigint and l.entity_type = 'users'$$,
  $$values (tests.get_supabase_uid('hana'), 'homeowner', '203.0.113.9', 'app/1')$$,
  'a forged actor kept for the transaction is not recorded: the row names hana, her role, her '
  'address and her user agent'
);

-- the genuine actor is still kept and read back within the request
select set_config('fixture.mark', (select coalesce(max(seq), 0) from public.payment_audit_logs)::text, true);
select tests.authenticate_as('hana', headers => '{"x-forwarded-for": "203.0.113.10"}');
update public.users set full_name = 'Hana I' where id = tests.get_supabase_uid('hana');
update public.users set full_name = 'Hana J' where id = tests.get_supabase_uid('hana');
select set_config('role', 'none', true);
select results_eq(
  $$select count(*)::int, count(distinct l.ip_address)::int, min(l.ip_address)::text
    from public.payment_audit_logs as l
    where l.seq > current_setting('fixture.mark')::bigint and l.entity_type = 'users'$$,
  $$values (2, 1, '203.0.113.10')$$,
  'two writes in one request record the same genuine address'
);

-- card verification code keys, in every form the key check reads
select ok(
  private.holds_card_data(value::jsonb),
  'a card verification code key written ' || how || ' is found'
)
from (
  values
  ('{"c_v_v": "123"}', 'with underscores'),
  ('{"cv v": "123"}', 'with a space'),
  (U&'{"c\200Bvv": "123"}', 'with a zero-width space'),
  ('{"c\tv\nv": "123"}', 'with JSON escapes'),
  (U&'{"\FF43\FF56\FF56": "123"}', 'in full-width letters'),
  ('{"card": {"Security-Code": "123"}}', 'with a dash, nested')
) as c (value, how);
select ok(
  not private.holds_card_data(value::jsonb),
  'a key ' || what || ' is no card verification code key'
)
from (
  values
  ('{"cvv_check": "pass"}', 'reporting a processor''s check'),
  ('{"civic": "centre", "note": "vcs"}', 'with the letters apart in words')
) as c (value, what);
select throws_ok(
  $$insert into private.settings (key, value, description)
    values ('attack_cvv', '{"c_v_v": "123"}', 'a card verification code under a spaced key')$$,
  'PT422', 'card verification code key "c_v_v" in settings.value: never store it',
  'a setting holding a card verification code under a spaced key is refused'
);
select is(
  private.without_card_data(U&'{"c\200Bvv": "123", "amount": 5}'::jsonb),
  U&'{"c\200Bvv": "[removed: it held card data]", "amount": 5}'::jsonb,
  'a refused call''s parameters keep no card verification code under a zero-width key'
);

-- the chain: a hop too long to keep still leaves the chain's number of hops in the log
select set_config('fixture.mark', (select coalesce(max(seq), 0) from public.payment_audit_logs)::text, true);
select tests.authenticate_as(
  'hana', headers => jsonb_build_object('x-forwarded-for', repeat('x', 2000) || ', 203.0.113.78')
);
update public.users set full_name = 'Hana K' where id = tests.get_supabase_uid('hana');
select set_config('role', 'none', true);
select results_eq(
  $$select l.ip_address::text, l.metadata ->> 'forwarded_for', (l.metadata ->> 'forwarded_hops')::int
    from public.payment_audit_logs as l
    where l.seq > current_setting('fixture.mark')::bigint and l.entity_type = 'users'$$,
  $$values ('203.0.113.78', '203.0.113.78', 2)$$,
  'a chain whose client-written hop is too long to keep is recorded with its two hops'
);

-- a refused call: its argument and the request's headers hold card numbers behind timestamps
select set_config('fixture.mark', (select coalesce(max(seq), 0) from public.payment_audit_logs)::text, true);
select tests.authenticate_as(
  'hana',
  headers => '{"user-agent": "app 4242 2024-01-01 12:02", "x-correlation-id": "4242 2024-01-01 12:02"}'
);
select is(
  public.open_dispute(
    '30000000-0000-4000-8000-000000000001', 'card 4242 2024-01-01 12:02 was charged twice', 'key-a'
  ) ->> 'message',
  'card number in disputes.reason: store the processor''s token (pm_…) instead',
  'a dispute whose reason holds a card number behind a timestamp is refused'
);
select set_config('role', 'none', true);
select results_eq(
  $$select count(*)::int, bool_or(private.holds_card_data(to_jsonb(l)))
    from public.payment_audit_logs as l
    where l.seq > current_setting('fixture.mark')::bigint and not l.success$$,
  $$values (1, false)$$,
  'the refusal is recorded, and no value of its row holds card data'
);

select * from finish();
rollback;
