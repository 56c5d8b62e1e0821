-- created_at and updated_at are the database's to keep: a client cannot back-date a row.

/**
 * BEFORE INSERT OR UPDATE trigger: sets created_at and updated_at from the clock, whatever
 * the statement asked for, and keeps created_at as it was on update.
 */
create function private.keep_row_timestamps() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if tg_op = 'INSERT' then
    new.created_at := now();
  else
    new.created_at := old.created_at;
  end if;
  new.updated_at := now();
  return new;
end
$$;

revoke all on function private.keep_row_timestamps() from public;
