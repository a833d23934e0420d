"""Runs one Nexmark query on Apache Flink (PyFlink's embedded mini cluster)
over a JSON lines file written by `examples/nexmark.rs generate`, into a
blackhole sink, and prints the job's net runtime.

The table and views follow the DDL of Flink's Nexmark suite
(nexmark-flink/src/main/resources/queries/ddl_*.sql); times in the file are
epoch milliseconds, so the event time is TO_TIMESTAMP_LTZ(ms, 3), and the
watermark is dateTime - 4 s. The queries are the suite's SQL texts, with q3's
states in lower case (the Rust generator writes them so).

Usage: python flink_nexmark.py QUERY FILE PARALLELISM
Prints: query=QUERY seconds=S (the job's net runtime)
"""

import sys

from pyflink.table import EnvironmentSettings, TableEnvironment

SOURCE = """
CREATE TABLE nexmark (
    event_type INT,
    person ROW<id BIGINT, name VARCHAR, emailAddress VARCHAR, creditCard VARCHAR, city VARCHAR,
               state VARCHAR, dateTime BIGINT, extra VARCHAR>,
    auction ROW<id BIGINT, itemName VARCHAR, description VARCHAR, initialBid BIGINT, reserve BIGINT,
                dateTime BIGINT, expires BIGINT, seller BIGINT, category BIGINT, extra VARCHAR>,
    bid ROW<auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, url VARCHAR, dateTime BIGINT,
            extra VARCHAR>,
    dateTime AS TO_TIMESTAMP_LTZ(
        CASE
            WHEN event_type = 0 THEN person.dateTime
            WHEN event_type = 1 THEN auction.dateTime
            ELSE bid.dateTime
        END, 3),
    WATERMARK FOR dateTime AS dateTime - INTERVAL '4' SECOND
) WITH ('connector' = 'filesystem', 'path' = '{path}', 'format' = 'json')
"""

VIEWS = [
    """CREATE VIEW person AS SELECT person.id, person.name, person.emailAddress, person.creditCard,
       person.city, person.state, dateTime, person.extra FROM nexmark WHERE event_type = 0""",
    """CREATE VIEW auction AS SELECT auction.id, auction.itemName, auction.description, auction.initialBid,
       auction.reserve, dateTime, TO_TIMESTAMP_LTZ(auction.expires, 3) AS expires, auction.seller,
       auction.category, auction.extra FROM nexmark WHERE event_type = 1""",
    """CREATE VIEW bid AS SELECT bid.auction, bid.bidder, bid.price, bid.channel, bid.url, dateTime,
       bid.extra FROM nexmark WHERE event_type = 2""",
]

# (sink columns, query) per query, as in the suite.
QUERIES = {
    "q0": ("auction BIGINT, bidder BIGINT, price BIGINT, dateTime TIMESTAMP_LTZ(3), extra VARCHAR",
           "SELECT auction, bidder, price, dateTime, extra FROM bid"),
    "q1": ("auction BIGINT, bidder BIGINT, price DECIMAL(23, 3), dateTime TIMESTAMP_LTZ(3), extra VARCHAR",
           "SELECT auction, bidder, 0.908 * price as price, dateTime, extra FROM bid"),
    "q2": ("auction BIGINT, price BIGINT",
           "SELECT auction, price FROM bid WHERE MOD(auction, 123) = 0"),
    "q3": ("name VARCHAR, city VARCHAR, state VARCHAR, id BIGINT",
           """SELECT P.name, P.city, P.state, A.id
              FROM auction AS A INNER JOIN person AS P on A.seller = P.id
              WHERE A.category = 10 and (P.state = 'or' OR P.state = 'id' OR P.state = 'ca')"""),
    "q4": ("id BIGINT, final BIGINT",
           """SELECT Q.category, AVG(Q.final)
              FROM (
                  SELECT MAX(B.price) AS final, A.category
                  FROM auction A, bid B
                  WHERE A.id = B.auction AND B.dateTime BETWEEN A.dateTime AND A.expires
                  GROUP BY A.id, A.category
              ) Q
              GROUP BY Q.category"""),
    "q5": ("auction BIGINT, num BIGINT",
           """SELECT AuctionBids.auction, AuctionBids.num
              FROM (
                  SELECT auction, count(*) AS num, window_start AS starttime, window_end AS endtime
                  FROM TABLE(HOP(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '2' SECOND, INTERVAL '10' SECOND))
                  GROUP BY auction, window_start, window_end
              ) AS AuctionBids
              JOIN (
                  SELECT max(CountBids.num) AS maxn, CountBids.starttime, CountBids.endtime
                  FROM (
                      SELECT count(*) AS num, window_start AS starttime, window_end AS endtime
                      FROM TABLE(HOP(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '2' SECOND, INTERVAL '10' SECOND))
                      GROUP BY auction, window_start, window_end
                  ) AS CountBids
                  GROUP BY CountBids.starttime, CountBids.endtime
              ) AS MaxBids
              ON AuctionBids.starttime = MaxBids.starttime AND AuctionBids.endtime = MaxBids.endtime
                 AND AuctionBids.num >= MaxBids.maxn"""),
    "q7": ("auction BIGINT, price BIGINT, bidder BIGINT, dateTime TIMESTAMP_LTZ(3), extra VARCHAR",
           """SELECT B.auction, B.price, B.bidder, B.dateTime, B.extra
              FROM bid B
              JOIN (
                  SELECT MAX(price) AS maxprice, window_end as dateTime
                  FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '10' SECOND))
                  GROUP BY window_start, window_end
              ) B1
              ON B.price = B1.maxprice
              WHERE B.dateTime BETWEEN B1.dateTime - INTERVAL '10' SECOND AND B1.dateTime"""),
    "q8": ("id BIGINT, name VARCHAR, stime TIMESTAMP(3)",
           """SELECT P.id, P.name, P.starttime
              FROM (
                  SELECT id, name, window_start AS starttime, window_end AS endtime
                  FROM TABLE(TUMBLE(TABLE person, DESCRIPTOR(dateTime), INTERVAL '10' SECOND))
                  GROUP BY id, name, window_start, window_end
              ) P
              JOIN (
                  SELECT seller, window_start AS starttime, window_end AS endtime
                  FROM TABLE(TUMBLE(TABLE auction, DESCRIPTOR(dateTime), INTERVAL '10' SECOND))
                  GROUP BY seller, window_start, window_end
              ) A
              ON P.id = A.seller AND P.starttime = A.starttime AND P.endtime = A.endtime"""),
}


def quoted(sql):
    """`dateTime` is a keyword of Flink's SQL parser: quote it, as the suite does."""
    return sql.replace("dateTime", "`dateTime`")


def main():
    query, path, parallelism = sys.argv[1], sys.argv[2], sys.argv[3]
    columns, select = QUERIES[query]
    env = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
    env.get_config().set("parallelism.default", parallelism)
    env.get_config().set("table.local-time-zone", "UTC")
    env.execute_sql(quoted(SOURCE.format(path=path)))
    for view in VIEWS:
        env.execute_sql(quoted(view))
    env.execute_sql(quoted(f"CREATE TABLE discard_sink ({columns}) WITH ('connector' = 'blackhole')"))
    result = env.execute_sql(quoted(f"INSERT INTO discard_sink {select}"))
    execution = result.get_job_client().get_job_execution_result().result()
    print(f"query={query} seconds={execution.get_net_runtime() / 1000:.3f}", flush=True)


if __name__ == "__main__":
    main()
