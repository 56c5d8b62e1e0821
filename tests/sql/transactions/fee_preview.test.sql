-- public.fee_preview: a signed-in client sees the platform's fee and the payee's share before
-- paying, from private.platform_fee, the function a release charges with; bad input is a
-- clear refusal; anonymous callers and the backend roles have no access to it.
begin;
select plan(14);

select tests.let_roles_call_pgtap();
select tests.create_supabase_user('hana');
-- A schedule with a fixed part too, in a currency of its own, so the rounding and the cap show.
insert into private.fee_schedule (currency, rate_bps, fixed_minor) values ('CAD', 290, 30);

select tests.authenticate_as('hana');
select is(
  public.fee_preview(10000, 'USD'),
  '{"amount_minor": 10000, "currency": "USD", "fee_minor": 500, "payee_minor": 9500}'::jsonb,
  'a signed-in client sees the fee and the payee''s share of a release'
);
select is(
  public.fee_preview(10000, 'usd') ->> 'currency',
  'USD',
  'a currency in small letters is the same currency'
);
select is(
  public.fee_preview(1, 'CAD'),
  '{"amount_minor": 1, "currency": "CAD", "fee_minor": 1, "payee_minor": 0}'::jsonb,
  'the fee is never more than the amount'
);
reset role;
-- The preview is the charge: the same function, over amounts that round both ways.
select is(
  (select count(*)::int from unnest(array[
      1, 9, 10, 17, 50, 51, 99, 1000, 1234, 99999, 100001, 123456789, 900000000000
    ]::bigint[]) as a (amount)
    cross join (values ('USD'), ('CAD'), ('JPY')) as c (code)
    where (public.fee_preview(a.amount, c.code) ->> 'fee_minor')::bigint
      <> private.platform_fee(a.amount, c.code)),
  0,
  'for every amount and currency, the preview is what private.platform_fee charges'
);
update private.fee_schedule set rate_bps = 250 where currency = 'USD';
select tests.authenticate_as('hana');
select is(
  public.fee_preview(10001, 'USD') ->> 'fee_minor',
  '250',
  'and it follows the schedule as it stands (2.5% of 10001, rounded half up)'
);

-- refusals
select throws_ok(
  $$select public.fee_preview(0, 'USD')$$,
  'PT422', 'a fee is previewed for a positive amount, in minor units',
  'a zero amount is refused'
);
select throws_ok(
  $$select public.fee_preview(-500, 'USD')$$,
  'PT422', 'a fee is previewed for a positive amount, in minor units',
  'so is a negative one'
);
select throws_ok(
  $$select public.fee_preview(null, 'USD')$$,
  'PT422', 'a fee is previewed for a positive amount, in minor units',
  'and a missing one'
);
select throws_ok(
  $$select public.fee_preview(500, 'US')$$,
  'PT422', 'a currency is a three-letter ISO 4217 code',
  'a currency that is not three letters is refused'
);
select throws_ok(
  $$select public.fee_preview(500, 'US1')$$,
  'PT422', 'a currency is a three-letter ISO 4217 code',
  'so is one with a digit'
);
select throws_ok(
  $$select public.fee_preview(500, 'CHF')$$,
  'PT422', 'no platform fee is set for CHF',
  'a currency with no fee is refused, by the function a release would meet'
);
reset role;

-- who may call it
select tests.clear_authentication();
select throws_ok(
  $$select public.fee_preview(10000, 'USD')$$,
  '42501', 'permission denied for function fee_preview',
  'anonymous callers may not'
);
reset role;
select is(
  has_function_privilege('payment_service', 'public.fee_preview(bigint, text)', 'execute')
  or has_function_privilege('escrow_service', 'public.fee_preview(bigint, text)', 'execute'),
  false,
  'nor the backend roles, which never need it'
);
select ok(
  not has_function_privilege('authenticated', 'private.platform_fee(bigint, character)', 'execute'),
  'the schedule''s function itself stays out of the clients'' reach'
);

select * from finish();
rollback;
