"""Computed forcings: top-of-atmosphere solar radiation and time-of-day/-year features.
"""

from __future__ import annotations


import numpy as np




SOLAR_CONSTANT = 1361.0  # W m**-2 (Kopp & Lean 2011)
_NS_PER_S = 1_000_000_000

# ----------------------------------------------------------------------------
# Computed forcings.


def _year_fraction_parts(times: np.ndarray):
  """(days since Jan 1 00 UTC, days in that year, UTC hours of day), as float64 arrays."""
  t = np.asarray(times, 'datetime64[ns]')
  year = t.astype('datetime64[Y]')
  year_start = year.astype('datetime64[ns]')
  next_year = (year + 1).astype('datetime64[ns]')
  day_ns = 86400 * _NS_PER_S
  days = (t - year_start).astype(np.int64) / day_ns
  year_days = (next_year - year_start).astype(np.int64) / day_ns
  hours = (t - t.astype('datetime64[D]').astype('datetime64[ns]')).astype(np.int64) / (
      3600 * _NS_PER_S)
  return days, year_days, hours


def solar_position(times: np.ndarray) -> dict[str, np.ndarray]:
  """Sun's declination, equation of time and Earth-Sun distance factor.

  Spencer's (1971) Fourier series as given by NOAA ("General Solar Position
  Calculations") and Iqbal (1983), with the fractional year
  gamma = 2 pi / N (day_of_year - 1 + (hour - 12) / 24), N = 365 or 366:

    declination = 0.006918 - 0.399912 cos g + 0.070257 sin g - 0.006758 cos 2g
                  + 0.000907 sin 2g - 0.002697 cos 3g + 0.00148 sin 3g   [rad]
    eq. of time = 229.18 (0.000075 + 0.001868 cos g - 0.032077 sin g
                  - 0.014615 cos 2g - 0.040849 sin 2g)                    [min]
    (r0/r)**2   = 1.000110 + 0.034221 cos g + 0.001280 sin g
                  + 0.000719 cos 2g + 0.000077 sin 2g

  Accurate to ~0.03 deg in declination and ~0.5 min in the equation of time.

  Args:
    times: datetime64 array (UTC) of any shape.

  Returns:
    dict of float64 arrays of the shape of `times`: 'declination' (radians),
    'equation_of_time' (minutes), 'distance_factor' ((r0/r)**2), 'utc_hours'.
  """
  days, year_days, hours = _year_fraction_parts(times)
  g = 2 * np.pi / year_days * (days - 0.5)  # days already counts the hour
  decl = (0.006918 - 0.399912 * np.cos(g) + 0.070257 * np.sin(g)
          - 0.006758 * np.cos(2 * g) + 0.000907 * np.sin(2 * g)
          - 0.002697 * np.cos(3 * g) + 0.00148 * np.sin(3 * g))
  eot = 229.18 * (0.000075 + 0.001868 * np.cos(g) - 0.032077 * np.sin(g)
                  - 0.014615 * np.cos(2 * g) - 0.040849 * np.sin(2 * g))
  dist = (1.000110 + 0.034221 * np.cos(g) + 0.001280 * np.sin(g)
          + 0.000719 * np.cos(2 * g) + 0.000077 * np.sin(2 * g))
  return {'declination': decl, 'equation_of_time': eot, 'distance_factor': dist,
          'utc_hours': hours}


def toa_solar_radiation(times: np.ndarray, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
  """Instantaneous top-of-atmosphere incoming solar radiation in W m**-2.

  TOA = S0 (r0/r)**2 max(0, cos Z), with S0 = `SOLAR_CONSTANT` = 1361 W m**-2,
  cos Z = sin(lat) sin(decl) + cos(lat) cos(decl) cos(h), the hour angle
  h = (true solar time in minutes) / 4 - 180 degrees and true solar time
  = 60 * UTC hours + equation of time + 4 * longitude (degrees east); the
  declination, equation of time and (r0/r)**2 from `solar_position`.

  Args:
    times: datetime64 (UTC), shape (T,) (any shape works: it leads the output).
    lat: latitudes in degrees, broadcastable against `lon` to the spatial shape
      S, e.g. lat[None, :] and lon[:, None] for a (nlon, nlat) grid, or
      per-pixel (npix,) arrays for HEALPix.
    lon: longitudes in degrees (any convention, east positive).

  Returns:
    float64 array of shape (*times.shape, *S).
  """
  times = np.asarray(times, 'datetime64[ns]')
  lat = np.radians(np.asarray(lat, np.float64))
  lon = np.asarray(lon, np.float64)
  spatial = np.broadcast_shapes(lat.shape, lon.shape)
  sun = solar_position(times)
  expand = (Ellipsis,) + (None,) * len(spatial)
  decl = sun['declination'][expand]
  tst = 60 * sun['utc_hours'][expand] + sun['equation_of_time'][expand] + 4 * lon
  hour_angle = np.radians(tst / 4 - 180)
  cos_z = np.sin(lat) * np.sin(decl) + np.cos(lat) * np.cos(decl) * np.cos(hour_angle)
  return SOLAR_CONSTANT * sun['distance_factor'][expand] * np.maximum(cos_z, 0.0)


def time_features(times: np.ndarray) -> dict[str, np.ndarray]:
  """Time-of-day and time-of-year phases (spatially constant forcings).

  time_of_day = 2 pi * UTC hour / 24 and time_of_year = 2 pi * d / 365.25, d the
  fractional days since January 1st 00:00 UTC of the same year.

  Args:
    times: datetime64 array (UTC) of any shape.

  Returns:
    dict of float64 arrays shaped like `times`: 'time_of_day_sin',
    'time_of_day_cos', 'time_of_year_sin', 'time_of_year_cos'.
  """
  days, _, hours = _year_fraction_parts(times)
  day_phase = 2 * np.pi * hours / 24
  year_phase = 2 * np.pi * days / 365.25
  return {'time_of_day_sin': np.sin(day_phase), 'time_of_day_cos': np.cos(day_phase),
          'time_of_year_sin': np.sin(year_phase), 'time_of_year_cos': np.cos(year_phase)}

