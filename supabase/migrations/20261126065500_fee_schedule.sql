-- The platform's fee on a released milestone payment, computed on the server from a
-- schedule: never from anything a client sends (threat model: processing fee manipulation).

create table private.fee_schedule (
  currency char(3) primary key check (currency ~ '^[A-Z]{3}$'),
  rate_bps int not null check (rate_bps between 0 and 10000),
  fixed_minor bigint not null default 0 check (fixed_minor >= 0),
  updated_at timestamptz not null default now()
);

comment on table private.fee_schedule is
'Per currency, the platform fee on a release: rate_bps basis points of the amount, rounded '
'half up, plus fixed_minor, never more than the amount.';

insert into private.fee_schedule (currency, rate_bps, fixed_minor)
values ('USD', 500, 0), ('EUR', 500, 0), ('GBP', 500, 0), ('JPY', 500, 0);

/** The platform fee on releasing `amount` minor units of `fee_currency`. */
create function private.platform_fee(amount bigint, fee_currency char(3)) returns bigint
language plpgsql
stable
security definer
set search_path = ''
as $$
declare
  schedule private.fee_schedule;
begin
  select * into schedule from private.fee_schedule as f where f.currency = fee_currency;
  if not found then
    raise exception 'no platform fee is set for %', fee_currency
    using errcode = 'PT422', hint = 'add the currency to private.fee_schedule';
  end if;
  -- numeric, not float: exact, and rounded half up
  return least(
    amount,
    schedule.fixed_minor + round(amount::numeric * schedule.rate_bps / 10000)::bigint
  );
end
$$;

revoke all on function private.platform_fee(bigint, char) from public;
