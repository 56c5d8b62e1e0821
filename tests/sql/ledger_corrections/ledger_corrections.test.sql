-- Ledger corrections: one admin proposes a transfer between two ledger accounts, a second,
-- distinct admin approves it, and only then is it posted, as a new balanced transfer. Every
-- other role is refused; bad input is refused with PT422 and changes nothing.
begin;
select plan(42);

-- the backend and staff roles may call pgTAP's assertions (rolled back with the test)
select tests.let_roles_call_pgtap();

-- fixtures, as postgres: carl has 100000 USD in his wallet, and an empty EUR one; ada and abe
-- are admins, otto an auditor
select tests.create_supabase_user('carl', metadata => '{"role": "contractor"}');
select tests.create_supabase_user('ada');
select tests.create_supabase_user('abe');
select tests.create_supabase_user('otto');
update public.users set role = 'admin' where id in (tests.get_supabase_uid('ada'), tests.get_supabase_uid('abe'));
update public.users set role = 'auditor' where id = tests.get_supabase_uid('otto');
select tests.fund_wallet(tests.get_supabase_uid('carl'), 100000);
select set_config('fixture.wallet', private.ledger_wallet(tests.get_supabase_uid('carl'), 'USD')::text, true);
select set_config('fixture.eur_wallet', private.ledger_wallet(tests.get_supabase_uid('carl'), 'EUR')::text, true);
select set_config('fixture.fees', private.ledger_system_account('platform_fees', 'USD')::text, true);
select set_config('fixture.transfers', (select count(*) from private.ledger_transfers)::text, true);
-- a proposal: 5000 USD from the platform's fees to carl's wallet
create temporary table proposal (statement text) on commit drop;
insert into proposal values (format(
  $$select public.propose_ledger_correction(%L, %L, 5000, 'usd', 'Fee charged twice on release 42: refund it')$$,
  current_setting('fixture.fees'), current_setting('fixture.wallet')
));
grant select on proposal to anon, authenticated, service_role, payment_service, escrow_service, admin, auditor;

-- as anon, a user, the auditor and the backend roles: no way to propose
select tests.clear_authentication();
select throws_ok((select statement from proposal), '42501',
  'permission denied for function propose_ledger_correction', 'anon cannot propose a correction');
reset role;
select tests.authenticate_as('carl', aal => 'aal2');
select throws_ok((select statement from proposal), '42501',
  'permission denied for function propose_ledger_correction', 'a user cannot propose a correction');
reset role;
select tests.authenticate_as('otto', aal => 'aal2', role_name => 'auditor');
select throws_ok((select statement from proposal), '42501',
  'permission denied for function propose_ledger_correction', 'an auditor cannot propose a correction');
reset role;
select tests.authenticate_as_service('payment_service');
select throws_ok((select statement from proposal), '42501',
  'permission denied for function propose_ledger_correction', 'payment_service cannot propose a correction');
reset role;
select tests.authenticate_as_service('escrow_service');
select throws_ok((select statement from proposal), '42501',
  'permission denied for function propose_ledger_correction', 'escrow_service cannot propose a correction');
reset role;
select tests.authenticate_as_service('service_role');
select throws_ok((select statement from proposal), '42501',
  'permission denied for table ledger_corrections', 'service_role cannot propose a correction');
reset role;

-- as ada at aal1: refused
select tests.authenticate_as('ada', role_name => 'admin');
select throws_ok((select statement from proposal), 'PT403',
  'a staff member''s change to ledger_corrections needs multi-factor authentication (aal2)',
  'an admin at aal1 cannot propose a correction');
reset role;

-- as ada at aal2: bad input is refused, naming the rule
select tests.authenticate_as('ada', aal => 'aal2', role_name => 'admin');
select throws_ok(
  format($$select public.propose_ledger_correction(%L, %L, 0, 'USD', 'Fee charged twice on release 42')$$,
    current_setting('fixture.fees'), current_setting('fixture.wallet')),
  'PT422', 'a ledger correction moves a positive amount of minor units, not 0',
  'a correction of nothing is refused');
select throws_ok(
  format($$select public.propose_ledger_correction(%L, %L, -5, 'USD', 'Fee charged twice on release 42')$$,
    current_setting('fixture.fees'), current_setting('fixture.wallet')),
  'PT422', 'a ledger correction moves a positive amount of minor units, not -5',
  'a negative correction is refused');
select throws_ok(
  format($$select public.propose_ledger_correction(%L, %L, 5000, 'USD', 'Fee charged twice on release 42')$$,
    current_setting('fixture.wallet'), current_setting('fixture.wallet')),
  'PT422', format('a ledger correction moves money between two accounts, not within %s', current_setting('fixture.wallet')),
  'a correction within one account is refused');
select throws_ok(
  format($$select public.propose_ledger_correction('00000000-0000-0000-0000-00000000abcd', %L, 5000, 'USD', 'Fee charged twice on release 42')$$,
    current_setting('fixture.wallet')),
  'PT422', 'no ledger account 00000000-0000-0000-0000-00000000abcd to correct from',
  'a correction from an unknown account is refused');
select throws_ok(
  format($$select public.propose_ledger_correction(%L, '00000000-0000-0000-0000-00000000abcd', 5000, 'USD', 'Fee charged twice on release 42')$$,
    current_setting('fixture.fees')),
  'PT422', 'no ledger account 00000000-0000-0000-0000-00000000abcd to correct to',
  'a correction to an unknown account is refused');
select throws_ok(
  format($$select public.propose_ledger_correction(%L, %L, 5000, 'USD', 'Fee charged twice on release 42')$$,
    current_setting('fixture.fees'), current_setting('fixture.eur_wallet')),
  'PT422', format('ledger accounts %s (USD) and %s (EUR) do not both hold USD',
    current_setting('fixture.fees'), current_setting('fixture.eur_wallet')),
  'a correction across currencies is refused');
select throws_ok(
  format($$select public.propose_ledger_correction(%L, %L, 5000, 'US', 'Fee charged twice on release 42')$$,
    current_setting('fixture.fees'), current_setting('fixture.wallet')),
  'PT422', 'not an ISO 4217 currency code: US',
  'a correction in no currency is refused');
select throws_ok(
  format($$select public.propose_ledger_correction(%L, %L, 5000, 'USD', ' ... !!! ')$$,
    current_setting('fixture.fees'), current_setting('fixture.wallet')),
  'PT422', 'a ledger correction needs a written reason of 10 to 2000 characters',
  'a correction without a written reason is refused');
reset role;
select is((select count(*)::int from public.ledger_corrections), 0, 'the refused proposals left nothing');

-- as ada at aal2: she proposes; nothing moves yet
select tests.authenticate_as('ada', aal => 'aal2', role_name => 'admin');
select set_config('fixture.c1', (select (p ->> 'id') from (select public.propose_ledger_correction(
  current_setting('fixture.fees')::uuid, current_setting('fixture.wallet')::uuid, 5000, 'usd',
  'Fee charged twice on release 42: refund it') as p) as x), true);
select results_eq(
  format($$select status, proposed_by, currency::text from public.ledger_corrections where id = %L$$, current_setting('fixture.c1')),
  format($$values ('proposed'::text, %L::uuid, 'USD'::text)$$, tests.get_supabase_uid('ada')),
  'the proposal is recorded in her name, waiting for a second admin');
select throws_ok(
  format($$select public.approve_ledger_correction(%L, 'I checked it twice myself')$$, current_setting('fixture.c1')),
  'PT403', 'no one approves their own ledger correction',
  'the proposer cannot approve her own correction');
select throws_ok(
  format($$update public.ledger_corrections set amount_minor = 50000 where id = %L$$, current_setting('fixture.c1')),
  '42501', 'permission denied for table ledger_corrections',
  'nor change its amount');
reset role;
select is(
  (select count(*)::int from private.ledger_transfers where reference_type = 'ledger_correction'),
  0, 'no transfer is posted before the approval');

-- as abe: at aal1 refused, without a reason refused, then he approves
select tests.authenticate_as('abe', role_name => 'admin');
select throws_ok(
  format($$select public.approve_ledger_correction(%L, 'Matches the processor report')$$, current_setting('fixture.c1')),
  'PT403', 'a staff member''s change to ledger_corrections needs multi-factor authentication (aal2)',
  'a second admin at aal1 cannot approve');
reset role;
select tests.authenticate_as('abe', aal => 'aal2', role_name => 'admin');
select throws_ok(
  format($$select public.approve_ledger_correction(%L, 'ok')$$, current_setting('fixture.c1')),
  'PT422', format('a decision on ledger correction %s needs a written reason of 10 to 2000 characters', current_setting('fixture.c1')),
  'an approval without a written reason is refused');
select throws_ok(
  $$select public.approve_ledger_correction('00000000-0000-0000-0000-00000000abcd', 'Matches the processor report')$$,
  'PT404', 'no ledger correction 00000000-0000-0000-0000-00000000abcd',
  'an approval of no correction is refused');
select set_config('fixture.answer', public.approve_ledger_correction(
  current_setting('fixture.c1')::uuid, 'Matches the processor report for release 42')::text, true);
select is(current_setting('fixture.answer')::jsonb ->> 'status', 'posted', 'a second admin approves: it is posted');
select is(current_setting('fixture.answer')::jsonb ->> 'decided_by', tests.get_supabase_uid('abe')::text, 'in his name');
select throws_ok(
  format($$select public.approve_ledger_correction(%L, 'Matches the processor report')$$, current_setting('fixture.c1')),
  'PT409', format('ledger correction %s is posted already: a decided correction never changes', current_setting('fixture.c1')),
  'a posted correction is not approved twice');
reset role;

-- the transfer: new, balanced, what was proposed; nothing before it changed
select results_eq(
  format($$select code, debit_account_id, credit_account_id, amount, currency::text, reference_id
    from private.ledger_transfers where reference_type = 'ledger_correction'$$),
  format($$values ('ledger_correction'::text, %L::uuid, %L::uuid, 5000::bigint, 'USD'::text, %L::uuid)$$,
    current_setting('fixture.fees'), current_setting('fixture.wallet'), current_setting('fixture.c1')),
  'one transfer is posted, from the fees to the wallet, referencing the correction');
select is(
  (current_setting('fixture.answer')::jsonb ->> 'transfer_id')::uuid,
  (select id from private.ledger_transfers where reference_type = 'ledger_correction'),
  'the approval answers the transfer');
select is_empty(
  $$select e.transfer_id from private.ledger_entries as e join private.ledger_transfers as t on t.id = e.transfer_id
    where t.reference_type = 'ledger_correction' group by e.transfer_id, e.bucket
    having sum(e.amount) filter (where e.side = 'debit') is distinct from sum(e.amount) filter (where e.side = 'credit')$$,
  'its entries balance');
select is(
  (select credits_posted - debits_posted from private.ledger_limited_balances where account_id = current_setting('fixture.wallet')::uuid),
  105000::bigint, 'the wallet holds 5000 more');
select is((select count(*)::text from private.ledger_transfers), (current_setting('fixture.transfers')::int + 1)::text,
  'the correction added one transfer, and removed none');
select throws_ok(
  $$update private.ledger_transfers set amount = 1 where reference_type = 'ledger_correction'$$,
  'PT409', 'ledger_transfers are immutable: post a correcting transfer instead',
  'a past transfer is never rewritten, even by the owner');
select throws_ok(
  format($$delete from public.ledger_corrections where id = %L$$, current_setting('fixture.c1')),
  'PT409', format('ledger correction %s is a financial record: it is never deleted', current_setting('fixture.c1')),
  'a correction is never deleted, even by the owner');
select ok(
  (select count(*) >= 2 from public.payment_audit_logs where entity_id = current_setting('fixture.c1')),
  'the proposal and its approval are in the audit trail');

-- an approval that would overdraw a wallet changes nothing; the proposer withdraws it
select tests.authenticate_as('ada', aal => 'aal2', role_name => 'admin');
select set_config('fixture.c2', (select (p ->> 'id') from (select public.propose_ledger_correction(
  current_setting('fixture.wallet')::uuid, current_setting('fixture.fees')::uuid, 999999, 'USD',
  'Take back the payout credited twice') as p) as x), true);
reset role;
select tests.authenticate_as('abe', aal => 'aal2', role_name => 'admin');
select throws_ok(
  format($$select public.approve_ledger_correction(%L, 'Matches the processor report')$$, current_setting('fixture.c2')),
  'PT409', format('user_wallet account %s would be overdrawn', current_setting('fixture.wallet')),
  'an approval that would overdraw the wallet is refused');
select is((select status from public.ledger_corrections where id = current_setting('fixture.c2')::uuid), 'proposed',
  'and the correction still waits');
select throws_ok(
  format($$update public.ledger_corrections set status = 'withdrawn', decision_reason = 'Wrong amount entered' where id = %L$$,
    current_setting('fixture.c2')),
  'PT403', format('only its proposer withdraws ledger correction %s', current_setting('fixture.c2')),
  'another admin cannot withdraw it');
reset role;
select tests.authenticate_as('ada', aal => 'aal2', role_name => 'admin');
select is(
  public.reject_ledger_correction(current_setting('fixture.c2')::uuid, 'Wrong amount entered, will propose anew') ->> 'status',
  'withdrawn', 'the proposer withdraws it');
-- a third proposal, which abe rejects
select set_config('fixture.c3', (select (p ->> 'id') from (select public.propose_ledger_correction(
  current_setting('fixture.wallet')::uuid, current_setting('fixture.fees')::uuid, 100, 'USD',
  'Fee not charged on release 43') as p) as x), true);
reset role;
select tests.authenticate_as('abe', aal => 'aal2', role_name => 'admin');
select is(
  public.reject_ledger_correction(current_setting('fixture.c3')::uuid, 'The fee was waived for this project') ->> 'status',
  'rejected', 'a second admin rejects a proposal');
select throws_ok(
  format($$select public.approve_ledger_correction(%L, 'Matches the processor report')$$, current_setting('fixture.c3')),
  'PT409', format('ledger correction %s is rejected already: a decided correction never changes', current_setting('fixture.c3')),
  'a rejected correction is never approved');
reset role;
select is(
  (select count(*)::int from private.ledger_transfers where reference_type = 'ledger_correction'),
  1, 'only the approved correction moved money');

-- as the auditor: reads the corrections, changes none
select tests.authenticate_as('otto', aal => 'aal2', role_name => 'auditor');
select is((select count(*)::int from public.ledger_corrections), 3, 'the auditor reads every correction');
reset role;

select * from finish();
rollback;
