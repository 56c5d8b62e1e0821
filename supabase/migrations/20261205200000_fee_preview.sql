-- Fees can be seen before paying: public.fee_preview(amount_minor, currency) answers the fee
-- and the payee's share from private.platform_fee, the function a release charges with.

set local check_function_bodies = off;

/**
 * What releasing `amount_minor` minor units of `currency` would cost the payee, before anyone
 * pays (PostgREST: /rpc/fee_preview): the amount, the platform's fee and the payee's share,
 * from private.platform_fee, the very function a release charges with, so the preview and the
 * charge cannot differ. For signed-in clients; PT422 for an amount that is not a positive
 * whole number of minor units, or a currency with no fee. Security definer: the schedule is
 * not the client's to read.
 */
create or replace function public.fee_preview(amount_minor bigint, currency text)
returns jsonb
language plpgsql
stable
security definer
set search_path = ''
as $$
declare
  code char(3);
  fee bigint;
begin
  if amount_minor is null or amount_minor <= 0 then
    raise exception 'a fee is previewed for a positive amount, in minor units'
    using errcode = 'PT422';
  end if;
  if coalesce(currency, '') !~ '^[A-Za-z]{3}$' then
    raise exception 'a currency is a three-letter ISO 4217 code'
    using errcode = 'PT422';
  end if;
  code := upper(currency);
  fee := private.platform_fee(amount_minor, code);
  return jsonb_build_object(
    'amount_minor', amount_minor,
    'currency', code,
    'fee_minor', fee,
    'payee_minor', amount_minor - fee
  );
end
$$;

grant execute on function public.fee_preview(bigint, text) to authenticated;
