-- A transfer that cannot be reversed is left with the payee by an admin, in writing, once: the
-- withdrawal's reservation is posted (its money left the platform with the transfer), the
-- transfer_unreversed inconsistency is resolved with the admin's words, the payouts function
-- stops trying the reversal, and a reversal recorded afterwards is refused. Words alone never
-- close an unreversed transfer, and no one but an admin may decide it.
begin;
select plan(20);

-- Its payout methods are new and withdrawn to at once: their cool-down is lifted (the
-- cool-down's own tests: withdrawals/payout_method_cool_down.test.sql).
update private.settings set value = '0' where key = 'payout_method_cool_down_seconds';

select tests.let_roles_call_pgtap('payment_service', 'admin');

-- carl has 301.00 USD; w1 (100.00), w2 (200.00) and w3 (1.00) are requested; the payouts of
-- w1 and w2 fail
update private.settings set value = (
  select jsonb_object_agg(level, jsonb_build_object('calls', 1000, 'seconds', 60))
  from unnest(array['low', 'medium', 'high']) as level
)
where key = 'velocity_limits';
select tests.create_supabase_user('carl', metadata => '{"role": "contractor"}');
select tests.create_supabase_user('ada');
update public.users set role = 'admin' where id = tests.get_supabase_uid('ada');
insert into public.payout_methods (id, user_id, type, processor_account_id_lookup, processor_external_account_id_sealed, processor_external_account_id_lookup, currency)
values ('c0000000-0000-4000-8000-0000000000d1', tests.get_supabase_uid('carl'), 'bank_account',
  tests.token_lookup('acct_1Carl01'), tests.sealed_token(), tests.token_lookup('ba_1Carl01'), 'USD');
select tests.verify_connected_account('acct_1Carl01');
select tests.fund_wallet(tests.get_supabase_uid('carl'), 30100);
insert into public.withdrawals (id, user_id, payout_method_id, amount_minor, currency)
select format('d0000000-0000-4000-8000-00000000000%s', n)::uuid, tests.get_supabase_uid('carl'),
  'c0000000-0000-4000-8000-0000000000d1', case n when 3 then 100 else 10000 * n end, 'USD'
from generate_series(1, 3) as n;
select tests.authenticate_as_service('payment_service');
select public.record_withdrawal_transfer(format('d0000000-0000-4000-8000-00000000000%s', n)::uuid,
  'tr_W' || n)
from generate_series(1, 2) as n;
select public.record_withdrawal_payout(format('d0000000-0000-4000-8000-00000000000%s', n)::uuid,
  'po_W' || n)
from generate_series(1, 2) as n;
select public.apply_stripe_event(tests.stripe_event('payout.failed', format('{"id": "po_W%s",
  "object": "payout", "amount": %s, "currency": "usd", "status": "failed",
  "failure_code": "account_closed"}', n, 10000 * n)::jsonb) || jsonb_build_object('account', tests.token_lookup('acct_1Carl01')))
from generate_series(1, 2) as n;
-- w2's transfer is reversed and recorded; w1's cannot be
select public.record_withdrawal_transfer_reversal('d0000000-0000-4000-8000-000000000002', 'trr_W2');
reset role;

/** carl's USD wallet as he reads it: posted, reserved, withdrawable. */
create function pg_temp.wallet() returns table (posted bigint, reserved bigint, withdrawable bigint)
language plpgsql as $$
begin
  perform tests.authenticate_as('carl');
  return query select b.posted_minor, b.reserved_minor, b.withdrawable_minor
    from public.my_wallet_balances() as b where b.currency = 'USD';
  reset role;
end
$$;

select results_eq(
  $$select status::text from public.withdrawals order by amount_minor$$,
  $$values ('approved'), ('failed'), ('failed')$$,
  'w1 and w2 failed after their transfers (w3 waits)'
);
select results_eq(
  $$select * from pg_temp.wallet()$$,
  $$values (30100::bigint, 10100::bigint, 20000::bigint)$$,
  'w1''s 100.00 stays reserved while its transfer stands; w2''s is back'
);

-- no one but an admin, at aal2, in writing
select tests.authenticate_as('carl', aal => 'aal2');
select throws_ok(
  $$select public.leave_transfer_with_payee('d0000000-0000-4000-8000-000000000001',
    'The connected account was closed after paying it out.')$$,
  '42501', 'permission denied for function leave_transfer_with_payee',
  'the payee may not'
);
reset role;
select tests.authenticate_as_service('payment_service');
select throws_ok(
  $$select public.leave_transfer_with_payee('d0000000-0000-4000-8000-000000000001',
    'The connected account was closed after paying it out.')$$,
  '42501', 'permission denied for function leave_transfer_with_payee',
  'nor payment_service'
);
reset role;
select tests.authenticate_as('ada', aal => 'aal1', role_name => 'admin');
select throws_ok(
  $$select tests.raise_if_refused(public.leave_transfer_with_payee(
    'd0000000-0000-4000-8000-000000000001', 'The connected account was closed after paying it out.'))$$,
  'PT403', 'leaving a transfer with the payee needs MFA (aal2)',
  'nor an admin at aal1'
);
reset role;
select tests.authenticate_as('ada', aal => 'aal2', role_name => 'admin');
select throws_ok(
  $$select tests.raise_if_refused(public.leave_transfer_with_payee(
    'd0000000-0000-4000-8000-000000000001', 'closed'))$$,
  'PT422',
  'leaving the transfer of withdrawal d0000000-0000-4000-8000-000000000001 with the payee needs a written resolution of 10 to 1900 characters',
  'an admin writes why'
);
select is(
  public.leave_transfer_with_payee('d0000000-0000-4000-8000-000000000001', 'closed') ->> 'code',
  'PT422',
  'a refusal is answered, not raised, as PostgREST answers an RPC''s error'
);
select throws_ok(
  $$select tests.raise_if_refused(public.leave_transfer_with_payee(
    'd0000000-0000-4000-8000-0000000000ff', 'The connected account was closed after paying it out.'))$$,
  'PT404', 'no withdrawal d0000000-0000-4000-8000-0000000000ff',
  'an unknown withdrawal is not found'
);
select throws_ok(
  $$select tests.raise_if_refused(public.leave_transfer_with_payee(
    'd0000000-0000-4000-8000-000000000003', 'The connected account was closed after paying it out.'))$$,
  'PT409',
  'withdrawal d0000000-0000-4000-8000-000000000003 is approved with transfer none: there is no unreversed transfer to leave with the payee',
  'a withdrawal with no transfer has none to leave'
);
select throws_ok(
  $$select tests.raise_if_refused(public.leave_transfer_with_payee(
    'd0000000-0000-4000-8000-000000000002', 'The connected account was closed after paying it out.'))$$,
  'PT409',
  'the transfer of withdrawal d0000000-0000-4000-8000-000000000002 was reversed by trr_W2: its money is back on the platform',
  'nor one whose transfer was reversed'
);
select throws_ok(
  $$select tests.raise_if_refused(public.resolve_processor_inconsistency(
    (select id from public.processor_inconsistencies where processor_object_id = 'tr_W1'),
    'The connected account was closed after paying it out.'))$$,
  'PT409', null,
  'words alone do not close an unreversed transfer'
);

-- w1's transfer is left with carl
select is(
  public.leave_transfer_with_payee('d0000000-0000-4000-8000-000000000001',
    'The connected account was closed after paying it out; carl has the money.')
    ->> 'processor_transfer_id',
  'tr_W1',
  'an admin at aal2 leaves w1''s transfer with carl'
);
select throws_ok(
  $$select tests.raise_if_refused(public.leave_transfer_with_payee(
    'd0000000-0000-4000-8000-000000000001', 'The connected account was closed after paying it out.'))$$,
  'PT409', null,
  'once'
);
reset role;
select results_eq(
  $$select t.kind::text, t.amount from private.ledger_transfers as t
    where t.pending_id = private.withdrawal_reservation('d0000000-0000-4000-8000-000000000001')$$,
  $$values ('post_pending', 10000::bigint)$$,
  'its reservation is posted once: the money left the platform with the transfer'
);
select results_eq(
  $$select * from pg_temp.wallet()$$,
  $$values (20100::bigint, 100::bigint, 20000::bigint)$$,
  'and it is no longer in carl''s wallet'
);
select results_eq(
  $$select resolution, resolved_at is not null from public.processor_inconsistencies
    where kind = 'transfer_unreversed' and processor_object_id = 'tr_W1'$$,
  $$values ('Left with the payee: The connected account was closed after paying it out; carl has the money.', true)$$,
  'its inconsistency is resolved with the admin''s words'
);
select tests.authenticate_as_service('payment_service');
select is_empty(
  $$select * from public.withdrawals_to_reverse()$$,
  'the payouts function no longer tries to reverse it'
);
select throws_ok(
  $$select public.record_withdrawal_transfer_reversal('d0000000-0000-4000-8000-000000000001', 'trr_W1')$$,
  'PT409',
  'the transfer of withdrawal d0000000-0000-4000-8000-000000000001 was left with the payee by operations: its reversal trr_W1 is not recorded (the money was counted as paid out)',
  'and a reversal recorded afterwards is refused'
);
reset role;
select is(
  (select count(*)::int from public.payment_audit_logs
    where operation = 'leave_transfer_with_payee' and not success),
  1,
  'a refusal answered to an admin is recorded in the audit trail (those raised again by '
  'raise_if_refused roll back with throws_ok''s savepoint)'
);
select is(
  (select count(*)::int from public.processor_inconsistencies where resolution is null),
  0,
  'nothing is left open'
);

select * from finish();
rollback;
