-- A refused call's audit row holds no more than the accepted call could have stored: each
-- argument at most the column limit it would have been stored in (an oversized one becomes
-- a marker with its length and SHA-256), the error message, the user agent and the
-- request's metadata bounded too. A value up to the limit is kept whole.
begin;
select plan(19);

select tests.let_roles_call_pgtap();

-- fixtures, as postgres: hana's kitchen, built by carl, with a funded and a pending payment
select tests.create_supabase_user('hana');
select tests.create_supabase_user('carl', metadata => '{"role": "contractor"}');
update private.settings set value = '{"time_zone": "UTC", "from": 0, "to": 24}'
where key = 'business_hours';
select tests.create_project_with_milestones(
  'hana',
  'carl',
  amounts => array[40000, 30000],
  titles => array['Cabinets', 'Counters']
);
select tests.set_milestone_payment_status('30000000-0000-4000-8000-000000000001', 'funded');
create temporary table oversized (name text primary key, value text not null);
insert into oversized (name, value)
values
('reason', repeat('The doors do not close. ', 21334)),
('payment intent', 'pi_' || repeat('Ab', 250000)),
('user agent', 'Mozilla/5.0 ' || repeat('(compatible) ', 8000)),
('correlation id', repeat('req-', 2500)),
('digits', repeat('Order 4242 4242, ', 400));
grant select on oversized to authenticated, payment_service;
select set_config('fixture.mark', (select max(seq) from public.payment_audit_logs)::text, true);

-- hana opens a dispute with a reason of 512,016 characters: the constraint refuses it
select tests.authenticate_as(
  'hana',
  headers => jsonb_build_object(
    'user-agent', (select value from oversized where name = 'user agent'),
    'x-correlation-id', (select value from oversized where name = 'correlation id')
  )
);
select is(
  (
    select jsonb_build_object(
      'code', a ->> 'code', 'status', current_setting('response.status', true),
      'details', a -> 'details'
    )
    from public.open_dispute(
      '30000000-0000-4000-8000-000000000001', (select value from oversized where name = 'reason'),
      'key-long'
    ) as a
  ),
  '{"code": "23514", "status": "400", "details": null}'::jsonb,
  'a reason over 5,000 characters is refused by the column''s constraint'
);
reset role;
select is(
  (select new_values from public.payment_audit_logs
    where seq > current_setting('fixture.mark')::bigint and operation = 'open_dispute'),
  jsonb_build_object(
    'milestone_payment_id', '30000000-0000-4000-8000-000000000001',
    'reason', format(
      '[oversized: 512016 characters, sha256 %s]',
      encode(extensions.digest((select value from oversized where name = 'reason'), 'sha256'), 'hex')
    )
  ),
  'the audit row keeps the reason''s length and fingerprint, not the reason'
);
select results_eq(
  $$select char_length(user_agent) <= 512, left(user_agent, 25),
      user_agent ~ '\[oversized: 104012 characters, sha256 [0-9a-f]{64}\]$',
      char_length(metadata ->> 'correlation_id') <= 255,
      metadata ->> 'correlation_id' ~ '^req-req-.*\[oversized: 10000 characters, sha256 [0-9a-f]{64}\]$'
    from public.payment_audit_logs
    where seq > current_setting('fixture.mark')::bigint and operation = 'open_dispute'$$,
  $$values (true, 'Mozilla/5.0 (compatible) ', true, true, true)$$,
  'the user agent is cut to 512 characters and the correlation id to 255, each with its marker'
);
select cmp_ok(
  (select octet_length(new_values::text) + octet_length(user_agent) + octet_length(metadata::text)
    + octet_length(error_message)
    from public.payment_audit_logs
    where seq > current_setting('fixture.mark')::bigint and operation = 'open_dispute'),
  '<',
  2000,
  'the whole row holds under 2 kB of the 626 kB the client sent'
);

-- a reason of exactly 5,000 characters is kept whole; one of 5,001 is not
select tests.authenticate_as('hana');
select is(
  public.open_dispute('30000000-0000-4000-8000-000000000002', repeat('a', 5000), 'key-5000') ->> 'code',
  'PT409',
  'a dispute over a pending payment is refused (5,000 characters of reason)'
);
select is(
  public.open_dispute('30000000-0000-4000-8000-000000000002', repeat('a', 5001), 'key-5001') ->> 'code',
  '23514',
  'and one of 5,001 characters by the column''s constraint'
);
reset role;
select results_eq(
  $$select char_length(new_values ->> 'reason') from public.payment_audit_logs
    where seq > current_setting('fixture.mark')::bigint and operation = 'open_dispute'
      and new_values ->> 'reason' not like '[oversized: 512016%'
    order by seq$$,
  $$values (5000), (char_length(format('[oversized: 5001 characters, sha256 %s]',
      encode(extensions.digest(repeat('a', 5001), 'sha256'), 'hex'))))$$,
  'the audit rows keep what the column could have held (5,000 characters), and a marker past it'
);
select is(
  (select new_values ->> 'reason' from public.payment_audit_logs
    where seq > current_setting('fixture.mark')::bigint and operation = 'open_dispute'
    order by seq desc limit 1),
  format('[oversized: 5001 characters, sha256 %s]',
    encode(extensions.digest(repeat('a', 5001), 'sha256'), 'hex')),
  'equal oversized values have equal fingerprints'
);

-- an oversized value with 13 digits or more keeps no fingerprint (it could hide a card number)
select tests.authenticate_as('carl');
select is(
  public.open_dispute('30000000-0000-4000-8000-000000000002',
    (select value from oversized where name = 'digits'), 'key-digits') ->> 'code',
  '23514',
  'a dispute with digits in its long reason is refused'
);
reset role;
select is(
  (select new_values ->> 'reason' from public.payment_audit_logs
    where seq > current_setting('fixture.mark')::bigint and operation = 'open_dispute'
    order by seq desc limit 1),
  '[oversized: 6800 characters]',
  'its marker has the length only'
);

-- payment_service funds with a PaymentIntent id of 500,003 characters for the wrong amount:
-- the message that repeats it is cut, and the argument becomes a marker
select tests.authenticate_as_service('payment_service');
select is(
  (
    select jsonb_build_object(
      'code', a ->> 'code', 'length', char_length(a ->> 'message') <= 1000,
      'start', left(a ->> 'message', 20), 'end', right(a ->> 'message', 30)
    )
    from public.fund_milestone_payment(
      '30000000-0000-4000-8000-000000000002', (select value from oversized where name = 'payment intent'),
      1, 'USD', 'key-fund'
    ) as a
  ),
  '{"code": "PT409", "length": true, "start": "PaymentIntent pi_AbA", "end": "[oversized: 500107 characters]"}'::jsonb,
  'the refusal''s message, which repeats the id, is cut to 1,000 characters'
);
reset role;
select results_eq(
  $$select char_length(error_message) <= 1000, new_values ->> 'processor_payment_intent_id',
      (new_values ->> 'amount_minor')::int
    from public.payment_audit_logs
    where seq > current_setting('fixture.mark')::bigint and operation = 'fund_milestone_payment'$$,
  $$values (true, format('[oversized: 500003 characters, sha256 %s]',
      encode(extensions.digest((select value from oversized where name = 'payment intent'), 'sha256'), 'hex')),
      1)$$,
  'its audit row holds the cut message and the id''s marker'
);

-- payment_service fails and completes withdrawals that do not exist: a failure reason up to
-- 500 characters (the column's) is kept, a payout id up to 255
select tests.authenticate_as_service('payment_service');
select is(
  array[
    public.fail_withdrawal('70000000-0000-4000-8000-000000000001', repeat('r', 500), 'key-f500') ->> 'code',
    public.fail_withdrawal('70000000-0000-4000-8000-000000000001', repeat('r', 501), 'key-f501') ->> 'code',
    public.complete_withdrawal('70000000-0000-4000-8000-000000000001', 'po_' || repeat('P', 252), 'key-c255') ->> 'code',
    public.complete_withdrawal('70000000-0000-4000-8000-000000000001', 'po_' || repeat('P', 253), 'key-c256') ->> 'code'
  ],
  array['PT404', 'PT404', 'PT404', 'PT404'],
  'refused: no such withdrawal'
);
reset role;
select results_eq(
  $$select operation::text, coalesce(new_values ->> 'failure_reason', new_values ->> 'processor_payout_id')
    from public.payment_audit_logs
    where seq > current_setting('fixture.mark')::bigint
      and operation in ('fail_withdrawal', 'complete_withdrawal')
    order by seq$$,
  $$values
    ('fail_withdrawal', repeat('r', 500)),
    ('fail_withdrawal', format('[oversized: 501 characters, sha256 %s]',
      encode(extensions.digest(repeat('r', 501), 'sha256'), 'hex'))),
    ('complete_withdrawal', 'po_' || repeat('P', 252)),
    ('complete_withdrawal', format('[oversized: 256 characters, sha256 %s]',
      encode(extensions.digest('po_' || repeat('P', 253), 'sha256'), 'hex')))$$,
  'each argument is kept up to its column''s limit, and replaced by its marker past it'
);

-- the bounds, one per text argument of each RPC, and the columns they come from
select results_eq(
  $$select p.proname::text collate "default", a.name collate "default", private.refused_call_argument_limit(p.proname, a.name)
    from pg_catalog.pg_proc as p
    cross join lateral unnest(p.proargnames, p.proargtypes::regtype[]) as a (name, type)
    where p.pronamespace = 'public'::regnamespace and a.type = 'text'::regtype
      and p.proname in ('create_milestone_payment', 'fund_milestone_payment',
        'release_milestone_payment', 'cancel_milestone_payment', 'open_dispute',
        'resolve_dispute', 'request_withdrawal', 'approve_withdrawal', 'complete_withdrawal',
        'fail_withdrawal', 'submit_milestone', 'reject_milestone',
        'release_lapsed_milestone_payment')
    order by 1, 2$$,
  $$values
    ('approve_withdrawal', 'idempotency_key', 255),
    ('approve_withdrawal', 'reason', 2000),
    ('cancel_milestone_payment', 'idempotency_key', 255),
    ('complete_withdrawal', 'idempotency_key', 255),
    ('complete_withdrawal', 'processor_payout_id', 255),
    ('create_milestone_payment', 'idempotency_key', 255),
    ('fail_withdrawal', 'failure_reason', 500),
    ('fail_withdrawal', 'idempotency_key', 255),
    ('fund_milestone_payment', 'idempotency_key', 255),
    ('fund_milestone_payment', 'processor_payment_intent_id', 255),
    ('open_dispute', 'idempotency_key', 255),
    ('open_dispute', 'reason', 5000),
    ('reject_milestone', 'idempotency_key', 255),
    ('reject_milestone', 'reason', 2000),
    ('release_lapsed_milestone_payment', 'idempotency_key', 255),
    ('release_milestone_payment', 'idempotency_key', 255),
    ('request_withdrawal', 'idempotency_key', 255),
    ('resolve_dispute', 'idempotency_key', 255),
    ('resolve_dispute', 'resolution', 5000),
    ('submit_milestone', 'idempotency_key', 255)$$,
  'every text argument of every RPC has its bound'
);
select results_eq(
  $$select conname::text collate "default", pg_get_constraintdef(oid) from pg_catalog.pg_constraint
    where conname in ('disputes_reason_check', 'disputes_resolution_check',
      'project_milestones_rejection_reason_check',
      'withdrawals_failure_reason_check', 'idempotency_keys_key_check',
      'withdrawal_approvals_reason_check')
    order by 1$$,
  $$values
    ('disputes_reason_check', 'CHECK (((char_length(reason) >= 1) AND (char_length(reason) <= 5000)))'),
    ('disputes_resolution_check', 'CHECK ((char_length(resolution) <= 5000))'),
    ('idempotency_keys_key_check', 'CHECK (((char_length(key) >= 1) AND (char_length(key) <= 255)))'),
    ('project_milestones_rejection_reason_check', 'CHECK (((char_length(rejection_reason) >= 1) AND (char_length(rejection_reason) <= 2000)))'),
    ('withdrawal_approvals_reason_check', 'CHECK (private.is_written(reason, 2000)) NOT VALID'),
    ('withdrawals_failure_reason_check', 'CHECK ((char_length(failure_reason) <= 500))')$$,
  'the bounds are the limits of the columns the accepted calls store these arguments in'
);
select is(
  private.bounded_text(repeat('x', 960) || ' 4242 4242 4242 4242 ' || repeat('y', 200), 1000),
  repeat('x', 960) || ' [oversized: 1181 characters]',
  'a cut text never ends in the middle of a run of digits'
);

-- the accepted call still takes 5,000 characters
select set_config('response.status', '', true);
select tests.authenticate_as('hana');
select is(
  (select char_length(a ->> 'reason')
    from tests.raise_if_refused(
      public.open_dispute('30000000-0000-4000-8000-000000000001', repeat('b', 5000), 'key-ok')
    ) as a),
  5000,
  'hana opens a dispute with a reason of 5,000 characters'
);
reset role;
select is(
  (select count(*)::int from public.disputes where milestone_payment_id = '30000000-0000-4000-8000-000000000001'),
  1,
  'and only that dispute exists'
);

select * from finish();
rollback;
