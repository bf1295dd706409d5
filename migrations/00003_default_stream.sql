-- The default stream every sluice database ships with.
SELECT sluice.create_stream('events');
