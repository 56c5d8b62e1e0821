-- A stranger learns nothing of another user's rows: for every RPC and every table write
-- whose triggers may refuse, the answer (status, code, message, details, hint) about
-- someone else's id is the answer about an id that does not exist, for ids in every state,
-- at either assurance level, near the amount limits and over the velocity limits.
-- Authorization comes first: the owner still meets every rule.
begin;
select plan(121);

select tests.let_roles_call_pgtap();

-- fixtures, as postgres: hana's kitchen, built by carl, with a milestone of 123457 USD for
-- each state of a payment (pending, funded, disputed, released, canceled, refunded) and one
-- with no payment; a resolved and an open dispute; hana's card; carl's bank account and his
-- withdrawals in every state. sam is the stranger.
select tests.create_supabase_user('hana');
select tests.create_supabase_user('carl', metadata => '{"role": "contractor"}');
select tests.create_supabase_user('sam');
update private.settings set value = '{"time_zone": "UTC", "from": 0, "to": 24}'
where key = 'business_hours';
select tests.create_project_with_milestones(
  'hana',
  'carl',
  amounts => array_fill(123457::bigint, array[7]),
  titles => array(select 'Step ' || n from generate_series(1, 7) as n),
  payments => 6
);
select tests.set_milestone_payment_status('30000000-0000-4000-8000-000000000002', 'funded');
select tests.set_milestone_payment_status('30000000-0000-4000-8000-000000000003', 'disputed');
select tests.set_milestone_payment_status('30000000-0000-4000-8000-000000000004', 'disputed');
select tests.set_milestone_payment_status('30000000-0000-4000-8000-000000000005', 'canceled');
select tests.set_milestone_payment_status('30000000-0000-4000-8000-000000000006', 'refunded');
insert into public.disputes (id, milestone_payment_id, opened_by, reason)
values ('40000000-0000-4000-8000-000000000001', '30000000-0000-4000-8000-000000000004',
  tests.get_supabase_uid('hana'), 'The doors do not close');
-- escrow_service resolves it, which releases its payment (4) in the same statement
select tests.authenticate_as_service('escrow_service');
update public.disputes set status = 'resolved', outcome = 'release',
  resolution = 'Fixed by the contractor'
where id = '40000000-0000-4000-8000-000000000001';
reset role;
insert into public.disputes (id, milestone_payment_id, opened_by, reason)
values ('40000000-0000-4000-8000-000000000002', '30000000-0000-4000-8000-000000000003',
  tests.get_supabase_uid('hana'), 'The doors fell off');
insert into public.payment_methods (
  id, user_id, type, processor_payment_method_id_sealed, processor_payment_method_id_lookup, processor_customer_id_lookup, brand, last4,
  exp_month, exp_year
)
values ('50000000-0000-4000-8000-000000000001', tests.get_supabase_uid('hana'), 'credit_card',
  tests.sealed_token(), tests.token_lookup('pm_1HanaCard'), tests.token_lookup('cus_1HanaCust'), 'visa', '4242', 12, 2030);
insert into public.payout_methods (
  id, user_id, type, processor_account_id_lookup, processor_external_account_id_sealed, processor_external_account_id_lookup, currency
)
values ('60000000-0000-4000-8000-000000000001', tests.get_supabase_uid('carl'), 'bank_account',
  tests.token_lookup('acct_1CarlBank'), tests.sealed_token(), tests.token_lookup('ba_1CarlBank'), 'USD');
select tests.fund_wallet(tests.get_supabase_uid('carl'), 10000000);
insert into public.withdrawals (id, user_id, payout_method_id, amount_minor, currency)
select ('70000000-0000-4000-8000-00000000000' || n)::uuid, tests.get_supabase_uid('carl'),
  '60000000-0000-4000-8000-000000000001', 1000 * n, 'USD'
from generate_series(1, 6) as n;
alter table public.withdrawals disable trigger check_withdrawal_transition;
update public.withdrawals set status = 'requested'
where id = '70000000-0000-4000-8000-000000000001';
update public.withdrawals set status = 'processing'
where id in ('70000000-0000-4000-8000-000000000003', '70000000-0000-4000-8000-000000000004',
  '70000000-0000-4000-8000-000000000005');
update public.withdrawals set status = 'paid', processor_payout_id = 'po_1CarlPaid'
where id = '70000000-0000-4000-8000-000000000004';
update public.withdrawals set status = 'failed', failure_reason = 'The bank refused it'
where id = '70000000-0000-4000-8000-000000000005';
update public.withdrawals set status = 'canceled'
where id = '70000000-0000-4000-8000-000000000006';
alter table public.withdrawals enable trigger check_withdrawal_transition;

-- What a stranger asks, about which of hana's and carl's ids, and the answer expected (the
-- same for an id that does not exist, with the id shown as <id>).
create temporary table stranger_cases (
  n integer primary key,
  name text not null,
  statement text not null,
  kind text not null,
  ids uuid[],
  expected jsonb not null
);
insert into stranger_cases (n, name, statement, kind, expected)
select
  row_number() over (), c.name, c.statement, c.kind,
  jsonb_build_object(
    'status', c.status, 'code', c.code, 'message', c.message, 'details', null, 'hint', c.hint
  )
from (
  values
  ('create_milestone_payment', $$select public.create_milestone_payment(%L, 'key-create')$$,
    'milestones', 403, '42501', 'new row violates row-level security policy for table "milestone_payments"', null),
  ('release_milestone_payment', $$select public.release_milestone_payment(%L, 'key-release')$$,
    'payments', 404, 'PT404', 'no milestone payment <id> that you may release', null),
  ('cancel_milestone_payment', $$select public.cancel_milestone_payment(%L, 'key-cancel')$$,
    'payments', 404, 'PT404', 'no milestone payment <id> that you may cancel', null),
  ('open_dispute', $$select public.open_dispute(%L, 'The doors do not close', 'key-dispute')$$,
    'payments', 403, '42501', 'new row violates row-level security policy for table "disputes"', null),
  ('request_withdrawal', $$select public.request_withdrawal(%L, 1000, 'USD', 'key-withdraw')$$,
    'payout methods', 409, 'PT409', 'withdrawal of 1000 USD exceeds the 0 USD available to withdraw',
    'released funds become withdrawable after the payout hold'),
  ('request_withdrawal in another currency', $$select public.request_withdrawal(%L, 1000, 'EUR', 'key-withdraw')$$,
    'payout methods', 409, 'PT409', 'withdrawal of 1000 EUR exceeds the 0 EUR available to withdraw',
    'released funds become withdrawable after the payout hold'),
  ('fund_milestone_payment', $$select public.fund_milestone_payment(%L, 'pi_1Stranger', 123457, 'USD', 'key-fund')$$,
    'payments', 403, '42501', 'permission denied for function fund_milestone_payment', null),
  ('resolve_dispute', $$select public.resolve_dispute(%L, 'refund', 'Mine now', 'key-resolve')$$,
    'disputes', 403, '42501', 'permission denied for function resolve_dispute', null),
  ('approve_withdrawal', $$select public.approve_withdrawal(%L, 'Checked against the payouts', 'key-approve')$$,
    'withdrawals', 403, '42501', 'permission denied for function approve_withdrawal', null),
  ('complete_withdrawal', $$select public.complete_withdrawal(%L, 'po_1Stranger', 'key-complete')$$,
    'withdrawals', 403, '42501', 'permission denied for function complete_withdrawal', null),
  ('fail_withdrawal', $$select public.fail_withdrawal(%L, 'The bank refused it', 'key-fail')$$,
    'withdrawals', 403, '42501', 'permission denied for function fail_withdrawal', null),
  ('POST /milestone_payments', $$insert into public.milestone_payments (milestone_id) values (%L)$$,
    'milestones', 403, '42501', 'new row violates row-level security policy for table "milestone_payments"', null),
  ('POST /disputes', $$insert into public.disputes (milestone_payment_id, reason) values (%L, 'The doors do not close')$$,
    'payments', 403, '42501', 'new row violates row-level security policy for table "disputes"', null),
  ('PATCH /disputes', $$update public.disputes set status = 'resolved', outcome = 'refund' where id = %L$$,
    'disputes', 403, '42501', 'permission denied for table disputes', null),
  ('POST /withdrawals', $$insert into public.withdrawals (payout_method_id, amount_minor, currency) values (%L, 1000, 'USD')$$,
    'payout methods', 409, 'PT409', 'withdrawal of 1000 USD exceeds the 0 USD available to withdraw',
    'released funds become withdrawable after the payout hold'),
  ('POST /withdrawals in another currency', $$insert into public.withdrawals (payout_method_id, amount_minor, currency) values (%L, 1000, 'EUR')$$,
    'payout methods', 409, 'PT409', 'withdrawal of 1000 EUR exceeds the 0 EUR available to withdraw',
    'released funds become withdrawable after the payout hold'),
  ('PATCH /withdrawals', $$update public.withdrawals set status = 'canceled' where id = %L$$,
    'withdrawals', 403, '42501', 'permission denied for table withdrawals', null),
  ('POST /withdrawal_approvals', $$insert into public.withdrawal_approvals (withdrawal_id) values (%L)$$,
    'withdrawals', 403, '42501', 'permission denied for table withdrawal_approvals', null),
  ('POST /payment_transactions', $$insert into public.payment_transactions (payment_method_id, amount_minor, currency) values (%L, 123457, 'USD')$$,
    'payment methods', 403, '42501',
    'new row violates row-level security policy "Users can charge only their own payment methods" for table "payment_transactions"', null),
  ('POST /escrow_accounts', $$insert into public.escrow_accounts (project_id, currency) values (%L, 'EUR')$$,
    'projects', 403, '42501',
    'new row violates row-level security policy "Users can open escrow only for their own projects" for table "escrow_accounts"', null),
  ('POST /project_milestones', $$insert into public.project_milestones (project_id, position, title, amount_minor, currency) values (%L, 9, 'Extra', 123457, 'USD')$$,
    'projects', 403, '42501', 'new row violates row-level security policy for table "project_milestones"', null)
) as c (name, statement, kind, status, code, message, hint);
-- Writes that only ever reach rows the caller may see: nothing, for a stranger.
insert into stranger_cases (n, name, statement, kind, expected)
select 100 + row_number() over (), c.name, c.statement, c.kind, '{"status": 200, "rows": 0}'
from (
  values
  ('PATCH /milestone_payments to released', $$update public.milestone_payments set status = 'released' where id = %L$$, 'payments'),
  ('PATCH /milestone_payments to canceled', $$update public.milestone_payments set status = 'canceled' where id = %L$$, 'payments'),
  ('PATCH /milestone_payments to disputed', $$update public.milestone_payments set status = 'disputed' where id = %L$$, 'payments'),
  ('PATCH /milestone_payments to funded', $$update public.milestone_payments set status = 'funded' where id = %L$$, 'payments'),
  ('DELETE /payment_methods', $$delete from public.payment_methods where id = %L$$, 'payment methods'),
  ('DELETE /payout_methods', $$delete from public.payout_methods where id = %L$$, 'payout methods'),
  ('PATCH /project_milestones', $$update public.project_milestones set title = 'Mine' where id = %L$$, 'milestones'),
  ('PATCH /projects', $$update public.projects set title = 'Mine' where id = %L$$, 'projects')
) as c (name, statement, kind);
update stranger_cases as c
set ids = (
  select array_agg(i.id order by i.id)
  from (
    select m.id, 'milestones' as kind from public.project_milestones as m
    union all select p.id, 'payments' from public.milestone_payments as p
    union all select d.id, 'disputes' from public.disputes as d
    union all select w.id, 'withdrawals' from public.withdrawals as w
    union all select o.id, 'payout methods' from public.payout_methods as o
    union all select m.id, 'payment methods' from public.payment_methods as m
    union all select p.id, 'projects' from public.projects as p
  ) as i
  where i.kind = c.kind
);

-- Where the answer differs from one situation of the stranger's to the next (the same for
-- every id all the same).
create temporary table stranger_answers (
  situation text not null,
  name text not null,
  expected jsonb not null,
  primary key (situation, name)
);
insert into stranger_answers (situation, name, expected)
select s.situation, n.name, jsonb_build_object(
  'status', 403, 'code', '42501',
  'message', format('new row violates row-level security policy "%s" for table "%s"', s.policy, s.table_name),
  'details', null, 'hint', null
)
from (
  values
  ('near the amount limits', 'Users can withdraw only to their own payout methods', 'withdrawals', 'withdrawal'),
  ('at aal1', 'Adding withdrawals requires MFA (aal2)', 'withdrawals', 'withdrawal'),
  ('at aal1', 'Large payment transactions require MFA (aal2)', 'payment_transactions', 'POST /payment_transactions'),
  ('at aal1', 'Adding escrow accounts requires MFA (aal2)', 'escrow_accounts', 'POST /escrow_accounts')
) as s (situation, policy, table_name, cases)
join stranger_cases as n
  on n.name = s.cases
  or (s.cases = 'withdrawal' and n.name in (
    'request_withdrawal', 'request_withdrawal in another currency', 'POST /withdrawals',
    'POST /withdrawals in another currency'
  ));
insert into stranger_answers (situation, name, expected)
select 'over the velocity limits', n.name, jsonb_build_object(
  'status', 429, 'code', 'PT429',
  'message', format('too many %s calls: at most %s per 60 seconds', n.operation, n.calls),
  'details', null, 'hint', 'wait for the window to pass, then retry'
)
from (
  values
  ('create_milestone_payment', 'milestone_payments.insert', 20),
  ('POST /milestone_payments', 'milestone_payments.insert', 20),
  ('release_milestone_payment', 'milestone_payments.release', 5),
  ('cancel_milestone_payment', 'milestone_payments.cancel', 20),
  ('open_dispute', 'disputes.insert', 20),
  ('POST /disputes', 'disputes.insert', 20),
  ('request_withdrawal', 'withdrawals.insert', 5),
  ('request_withdrawal in another currency', 'withdrawals.insert', 5),
  ('POST /withdrawals', 'withdrawals.insert', 5),
  ('POST /withdrawals in another currency', 'withdrawals.insert', 5),
  ('POST /payment_transactions', 'payment_transactions.insert', 5),
  ('POST /escrow_accounts', 'escrow_accounts.insert', 5)
) as n (name, operation, calls);
grant select on stranger_cases, stranger_answers to authenticated;

-- as sam, at aal2, with nothing of his own
select tests.authenticate_as('sam', aal => 'aal2');
select is(
  tests.answers_for(c.statement, c.ids),
  jsonb_build_array(c.expected),
  format('%s: a stranger gets the same answer for each of hana''s %s as for an id that does not exist', c.name, c.kind)
)
from stranger_cases as c order by c.n;
reset role;

-- as sam, at aal2, one minor unit under every daily amount limit, with money in his wallet
insert into private.daily_amounts (user_id, operation, currency, utc_day, total_minor)
select tests.get_supabase_uid('sam'), l.key, c.currency, (now() at time zone 'UTC')::date,
  (l.value ->> 'per_day')::bigint - 1
from jsonb_each(private.setting('amount_limits')) as l
cross join (values ('USD'), ('EUR')) as c (currency);
select tests.fund_wallet(tests.get_supabase_uid('sam'), 100000);
select tests.fund_wallet(tests.get_supabase_uid('sam'), 100000, 'EUR');
select tests.authenticate_as('sam', aal => 'aal2');
select is(
  tests.answers_for(c.statement, c.ids),
  jsonb_build_array(coalesce(a.expected, c.expected)),
  format('%s near the amount limits: the same answer for each of hana''s %s as for an unknown id', c.name, c.kind)
)
from stranger_cases as c
left join stranger_answers as a on a.name = c.name and a.situation = 'near the amount limits'
order by c.n;
reset role;

-- the same at aal1
select tests.authenticate_as('sam', aal => 'aal1');
select is(
  tests.answers_for(c.statement, c.ids),
  jsonb_build_array(coalesce(a.expected, c.expected)),
  format('%s at aal1, near the amount limits: the same answer for each of hana''s %s as for an unknown id', c.name, c.kind)
)
from stranger_cases as c
left join stranger_answers as a on a.name = c.name
  and a.situation = case when c.name in (
    'request_withdrawal', 'request_withdrawal in another currency', 'POST /withdrawals',
    'POST /withdrawals in another currency', 'POST /payment_transactions', 'POST /escrow_accounts'
  ) then 'at aal1' else 'near the amount limits' end
order by c.n;
reset role;

-- as sam, at aal2, with every velocity limit reached in this window
insert into private.rate_limit_counters (user_id, operation, window_start, call_count)
select tests.get_supabase_uid('sam'), r.operation,
  to_timestamp(floor(extract(epoch from now()) / (l.value ->> 'seconds')::int) * (l.value ->> 'seconds')::int),
  (l.value ->> 'calls')::int
from private.rate_limit_rules as r
join jsonb_each(private.setting('velocity_limits')) as l on l.key = r.rate_level;
select tests.authenticate_as('sam', aal => 'aal2');
select is(
  tests.answers_for(c.statement, c.ids),
  jsonb_build_array(coalesce(a.expected, c.expected)),
  format('%s over the velocity limits: the same answer for each of hana''s %s as for an unknown id', c.name, c.kind)
)
from stranger_cases as c
left join stranger_answers as a on a.name = c.name and a.situation = 'over the velocity limits'
order by c.n;
reset role;

-- the owner meets every rule, and the trigger still derives the payment for her
select tests.authenticate_as('hana', aal => 'aal2');
select is(
  (
    select jsonb_build_object('amount', r ->> 'amount_minor', 'currency', r ->> 'currency',
      'payee', r ->> 'payee_id', 'status', r ->> 'status')
    from tests.raise_if_refused(
      public.create_milestone_payment('20000000-0000-4000-8000-000000000007', 'key-own')
    ) as r
  ),
  jsonb_build_object('amount', '123457', 'currency', 'USD',
    'payee', tests.get_supabase_uid('carl')::text, 'status', 'pending'),
  'hana pays her own milestone: amount, currency and payee come from the milestone'
);
reset role;
select is(
  (select total_minor from private.daily_amounts
    where user_id = tests.get_supabase_uid('hana') and operation = 'milestone_payments.insert'),
  123457::bigint,
  'and it counts towards her daily amount'
);
update private.daily_amounts set total_minor = 19900000
where user_id = tests.get_supabase_uid('hana') and operation = 'milestone_payments.insert';
update public.milestone_payments set status = 'canceled'
where id = (select id from public.milestone_payments
  where milestone_id = '20000000-0000-4000-8000-000000000007');
select tests.authenticate_as('hana', aal => 'aal2');
select throws_ok(
  $$select tests.raise_if_refused(
    public.create_milestone_payment('20000000-0000-4000-8000-000000000007', 'key-own-again'))$$,
  'PT422',
  'milestone_payments.insert of 123457 USD would take today''s total to 20023457, over the daily limit of 20000000',
  'her daily limit still refuses her own payment, naming her own amount'
);
reset role;
select tests.authenticate_as('carl', aal => 'aal2');
select lives_ok(
  $$insert into public.withdrawals (payout_method_id, amount_minor, currency)
    values ('60000000-0000-4000-8000-000000000001', 2500, 'USD')$$,
  'carl withdraws to his own bank account'
);
reset role;
select is(
  (select total_minor from private.daily_amounts
    where user_id = tests.get_supabase_uid('carl') and operation = 'withdrawals.insert'),
  2500::bigint,
  'and it counts towards his daily amount'
);

select * from finish();
rollback;
