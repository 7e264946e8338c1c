"""The Flight streaming baseline: pyarrow's own C++ Flight server serving one
table held in memory (run by benches/flight.py in a process of its own, as
Quiver's server is). Prints `listening on PORT` once ready.

    python benches/arrow_flight_server.py PARQUET_GLOB COLUMNS
"""

import sys

import duckdb
import pyarrow.flight as flight


class TableServer(flight.FlightServerBase):
    def __init__(self, table):
        super().__init__("grpc://127.0.0.1:0")
        self.table = table

    def do_get(self, context, ticket):
        # RecordBatchStream streams from C++; no Python per batch.
        return flight.RecordBatchStream(self.table)


def main():
    glob, columns = sys.argv[1], sys.argv[2]
    table = duckdb.sql(f"SELECT {columns} FROM read_parquet('{glob}', union_by_name = true)").arrow()
    table = table.read_all() if hasattr(table, "read_all") else table
    table = table.combine_chunks()
    server = TableServer(table)
    print(f"listening on {server.port} rows {table.num_rows} bytes {table.nbytes}", flush=True)
    server.serve()


if __name__ == "__main__":
    main()
