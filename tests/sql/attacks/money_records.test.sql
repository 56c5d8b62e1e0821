-- Attacks on the money records (class 6), both ways: a written reason is words (invisible
-- characters, Unicode spaces, controls and punctuation alone are refused on every path that
-- closes a dispute, approves or cancels a withdrawal; real reasons in any script pass); a
-- disputed payment is settled only by a written decision; settled records stay as they are.
begin;
select plan(26);

-- Its payout methods are new and withdrawn to at once: their cool-down is lifted (the
-- cool-down's own tests: withdrawals/payout_method_cool_down.test.sql).
update private.settings set value = '0' where key = 'payout_method_cool_down_seconds';

select tests.let_roles_call_pgtap();

-- fixtures, as postgres: hana's kitchen, built by carl; payments 1 to 3 disputed by hana
-- (disputes 1 to 3 open), payment 4 released; carl's USD bank account, a large withdrawal
-- waiting for approval and a small approved one; ada and bob are admins
select tests.create_supabase_user('hana');
select tests.create_supabase_user('carl', metadata => '{"role": "contractor"}');
select tests.create_supabase_user('ada');
select tests.create_supabase_user('bob');
update public.users set role = 'admin'
where id in (tests.get_supabase_uid('ada'), tests.get_supabase_uid('bob'));
update private.settings set value = '{"time_zone": "UTC", "from": 0, "to": 24}'
where key = 'business_hours';
select tests.create_project_with_milestones(
  'hana',
  'carl',
  amounts => array[40000, 40000, 40000, 40000],
  titles => array['Step 1', 'Step 2', 'Step 3', 'Step 4']
);
select tests.set_milestone_payment_status(('30000000-0000-4000-8000-00000000000' || n)::uuid, 'disputed')
from generate_series(1, 3) as n;
select tests.set_milestone_payment_status('30000000-0000-4000-8000-000000000004', 'released');
insert into public.disputes (id, milestone_payment_id, opened_by, reason)
select ('40000000-0000-4000-8000-00000000000' || n)::uuid,
  ('30000000-0000-4000-8000-00000000000' || n)::uuid, tests.get_supabase_uid('hana'),
  'The doors do not close'
from generate_series(1, 3) as n;
insert into public.payout_methods (
  id, user_id, type, processor_account_id_lookup, processor_external_account_id_sealed, processor_external_account_id_lookup, currency
)
values ('60000000-0000-4000-8000-000000000001', tests.get_supabase_uid('carl'), 'bank_account',
  tests.token_lookup('acct_1CarlBank'), tests.sealed_token(), tests.token_lookup('ba_1CarlBank'), 'USD');
select tests.fund_wallet(tests.get_supabase_uid('carl'), 100000000);
insert into public.withdrawals (id, user_id, payout_method_id, amount_minor, currency)
values
('70000000-0000-4000-8000-000000000001', tests.get_supabase_uid('carl'),
  '60000000-0000-4000-8000-000000000001', 50000000, 'USD'),
('70000000-0000-4000-8000-000000000002', tests.get_supabase_uid('carl'),
  '60000000-0000-4000-8000-000000000001', 1000, 'USD');
-- reasons that write nothing: each 12 characters or more long
create temporary table blank_reasons (name text primary key, value text not null);
insert into blank_reasons (name, value)
values
('zero-width spaces', repeat(U&'\200B', 12)),
('no-break spaces', repeat(U&'\00A0', 12)),
('ideographic spaces', repeat(U&'\3000', 12)),
('control characters', repeat(E'\x01', 12)),
('byte-order marks', repeat(U&'\FEFF', 12)),
('word joiners', repeat(U&'\2060', 12)),
('soft hyphens', repeat(U&'\00AD', 12)),
('Hangul fillers', repeat(U&'\3164', 12)),
('braille blanks', repeat(U&'\2800', 12)),
('combining accents', repeat(U&'\0301', 12)),
('variation selectors', repeat(U&'\FE0F', 12)),
('tag characters', repeat(U&'\+0E0020', 12)),
('full stops', '............'),
('dashes and emoji', repeat(U&'\2014\+01F44D', 6)),
('two letters padded with zero-width spaces', 'o' || repeat(U&'\200B', 10) || 'k'),
('two words spaced apart', 'ok          ok');
grant select on blank_reasons to admin, escrow_service;

-- the rule itself
select is(
  (select array_agg(name order by name) from blank_reasons where private.is_written(value, 5000)),
  null,
  'none of the blank reasons is written'
);
select is(
  array[
    private.is_written('Fixed by the contractor', 5000),
    private.is_written('x x x x x x', 5000),
    private.is_written('Réglé à l''amiable', 5000),
    private.is_written('承包商已修复所有问题并验收', 5000),
    private.is_written(repeat('a', 5001), 5000),
    private.is_written(null, 5000)
  ],
  array[true, true, true, true, false, false],
  'words in any script are, but not past the column''s bound, nor nothing'
);

-- as ada (admin): resolve_dispute with each blank resolution
select tests.authenticate_as('ada', aal => 'aal2', role_name => 'admin');
select is(
  (
    select array_agg(distinct tests.answer(format(
      $$select public.resolve_dispute('40000000-0000-4000-8000-000000000001', 'refund', %L, 'key-%s')$$,
      b.value, b.name
    )) -> 'message')
    from blank_reasons as b
  ),
  array[to_jsonb('closing dispute 40000000-0000-4000-8000-000000000001 needs a written resolution of 10 to 5000 characters'::text)],
  'resolve_dispute refuses every blank resolution (PT422)'
);
select is(
  (
    select array_agg(distinct tests.answer(format(
      $$update public.disputes set status = 'resolved', outcome = 'refund', resolution = %L
        where id = '40000000-0000-4000-8000-000000000001'$$,
      b.value
    )) ->> 'code')
    from blank_reasons as b
  ),
  array['PT422'],
  'and so does a PATCH of the dispute'
);
select is(
  (
    select array_agg(distinct tests.answer(format(
      $$update public.disputes set status = 'withdrawn', resolution = %L
        where id = '40000000-0000-4000-8000-000000000001'$$,
      b.value
    )) ->> 'code')
    from blank_reasons as b
  ),
  array['PT422'],
  'and withdrawing it'
);
select is(
  (
    select array_agg(distinct tests.answer(format(
      $$select public.approve_withdrawal('70000000-0000-4000-8000-000000000001', %L, 'key-%s')$$,
      b.value, b.name
    )) -> 'message')
    from blank_reasons as b
  ),
  array[to_jsonb('an approval of withdrawal 70000000-0000-4000-8000-000000000001 needs a written reason of 10 to 2000 characters'::text)],
  'approve_withdrawal refuses every blank reason (PT422)'
);
select is(
  (
    select array_agg(distinct tests.answer(format(
      $$insert into public.withdrawal_approvals (withdrawal_id, reason)
        values ('70000000-0000-4000-8000-000000000001', %L)$$,
      b.value
    )) ->> 'code')
    from blank_reasons as b
  ),
  array['PT422'],
  'and so does a POST of the approval'
);
select is(
  (
    select array_agg(distinct tests.answer(format(
      $$update public.withdrawals set status = 'canceled', failure_reason = %L
        where id = '70000000-0000-4000-8000-000000000002'$$,
      b.value
    )) -> 'message')
    from blank_reasons as b
  ),
  array[to_jsonb('canceling withdrawal 70000000-0000-4000-8000-000000000002 needs a written reason of 10 to 500 characters'::text)],
  'an admin''s cancel of a withdrawal refuses every blank reason'
);
select throws_ok(
  $$update public.withdrawals set status = 'canceled' where id = '70000000-0000-4000-8000-000000000002'$$,
  'PT422',
  'canceling withdrawal 70000000-0000-4000-8000-000000000002 needs a written reason of 10 to 500 characters',
  'and a cancel with no reason at all'
);
-- the same actions, written
select is(
  tests.raise_if_refused(public.approve_withdrawal('70000000-0000-4000-8000-000000000001',
    'Checked against the invoices', 'key-approve')) ->> 'reason',
  'Checked against the invoices',
  'ada approves the large withdrawal with a written reason'
);
select lives_ok(
  $$update public.withdrawals set status = 'canceled', failure_reason = 'Le propriétaire l''a demandé'
    where id = '70000000-0000-4000-8000-000000000002'$$,
  'and cancels the small one, saying why'
);
select is(
  tests.raise_if_refused(public.resolve_dispute('40000000-0000-4000-8000-000000000001', 'refund',
    'Réglé à l''amiable', 'key-resolve')) ->> 'status',
  'resolved',
  'and resolves dispute 1 in French, with accents'
);
reset role;
select is(
  (select array[
      (select new_values ->> 'failure_reason' from public.payment_audit_logs
        where entity_type = 'withdrawals' and entity_id = '70000000-0000-4000-8000-000000000002'
          and new_values ->> 'status' = 'canceled'),
      (select new_values ->> 'reason' from public.payment_audit_logs
        where entity_type = 'withdrawal_approvals' and operation = 'INSERT'),
      (select new_values ->> 'resolution' from public.payment_audit_logs
        where entity_type = 'disputes' and entity_id = '40000000-0000-4000-8000-000000000001'
          and new_values ->> 'status' = 'resolved')
  ]),
  array['Le propriétaire l''a demandé', 'Checked against the invoices', 'Réglé à l''amiable'],
  'each reason is in the audit trail'
);

-- a withdrawn dispute leaves its payment disputed: no settlement without a written decision
select tests.authenticate_as('ada', aal => 'aal2', role_name => 'admin');
select lives_ok(
  $$update public.disputes set status = 'withdrawn', resolution = 'The homeowner withdrew it'
    where id = '40000000-0000-4000-8000-000000000002'$$,
  'ada withdraws dispute 2 in writing'
);
select throws_ok(
  $$update public.milestone_payments set status = 'refunded'
    where id = '30000000-0000-4000-8000-000000000002'$$,
  'PT409',
  'milestone payment 30000000-0000-4000-8000-000000000002 has no open dispute: a disputed payment is settled by deciding a dispute over it',
  'then she cannot refund its payment with no decision written'
);
reset role;
select tests.authenticate_as_service('escrow_service');
select throws_ok(
  $$update public.milestone_payments set status = 'released'
    where id = '30000000-0000-4000-8000-000000000002'$$,
  'PT409',
  'milestone payment 30000000-0000-4000-8000-000000000002 has no open dispute: a disputed payment is settled by deciding a dispute over it',
  'nor escrow_service release it'
);
reset role;
select tests.authenticate_as('hana', aal => 'aal2');
select lives_ok(
  $$select tests.raise_if_refused(public.open_dispute('30000000-0000-4000-8000-000000000002',
    'The doors still do not close', 'key-again'))$$,
  'hana opens a new dispute over it'
);
reset role;
select tests.authenticate_as('ada', aal => 'aal2', role_name => 'admin');
select is(
  tests.raise_if_refused(public.resolve_dispute(
    (select id from public.disputes where milestone_payment_id = '30000000-0000-4000-8000-000000000002' and status = 'open'),
    'release', 'The doors were fixed on site', 'key-resolve-2')) ->> 'status',
  'resolved',
  'and ada decides it in writing'
);
select is(
  (select status::text from public.milestone_payments where id = '30000000-0000-4000-8000-000000000002'),
  'released',
  'which releases the payment'
);
-- settling an open dispute's payment directly still works once its resolution is written
update public.disputes set resolution = 'Half the work was done well'
where id = '40000000-0000-4000-8000-000000000003';
select lives_ok(
  $$update public.milestone_payments set status = 'refunded'
    where id = '30000000-0000-4000-8000-000000000003'$$,
  'ada refunds payment 3 directly, its dispute''s resolution written'
);
select is(
  (select status::text from public.disputes where id = '40000000-0000-4000-8000-000000000003'),
  'resolved',
  'which closes its dispute'
);

-- settled records stay as they are
select throws_ok(
  $$update public.disputes set status = 'open', resolution = 'Reopened for another look'
    where id = '40000000-0000-4000-8000-000000000001'$$,
  'PT409',
  'dispute 40000000-0000-4000-8000-000000000001 is resolved: a closed dispute never changes',
  'a resolved dispute is not reopened'
);
reset role;
select throws_ok(
  $$delete from public.disputes where id = '40000000-0000-4000-8000-000000000002'$$,
  'PT409',
  'dispute 40000000-0000-4000-8000-000000000002 is withdrawn: a closed dispute is never deleted',
  'nor a withdrawn one deleted, even by the owner'
);
select tests.authenticate_as('hana', aal => 'aal2');
select is(
  public.open_dispute('30000000-0000-4000-8000-000000000004', 'The doors fell off again', 'key-4') ->> 'code',
  'PT409',
  'a released payment is not disputed again'
);
reset role;
select tests.authenticate_as('bob', aal => 'aal2', role_name => 'admin');
select set_config('response.status', '', true);
select lives_ok(
  $$select tests.raise_if_refused(public.approve_withdrawal('70000000-0000-4000-8000-000000000001',
    'Second check of the invoices done', 'key-approve-bob'))$$,
  'bob approves the large withdrawal too, which approves it'
);
reset role;
select throws_ok(
  $$update public.withdrawal_approvals set reason = 'Approved on second thoughts'
    where withdrawal_id = '70000000-0000-4000-8000-000000000001'$$,
  'PT409', null,
  'an approval acted on never changes, even for the owner'
);

select * from finish();
rollback;
