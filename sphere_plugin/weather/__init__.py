"""Weather forecasting: the application slice over the core (data to skill scores).

One module per concept, in dependency order:

    spec           WeatherSpec: what a run reads and how it cuts it (gin)
    conventions    opening a WB2 dataset and its canonical layout
    forcings       computed forcings (TOA solar radiation, time features)
    normalization  Normalizer: per-channel statistics and their JSON file; the
                   mergeable Moments / StatisticsSums behind them
    data           WeatherData: windows, channels, batches; compute_normalizer
    beam_statistics  the Normalizer as an Apache Beam reduction (beam extra)
    held_suarez    the embedded dataset, simulated with dinosaur
    forecaster     the Forecaster model (winds as spin-1), weighted MSE
    forecast_task  ForecastTask: the forecaster on the shared training loop
    inference      TrainedForecaster: a workdir's model, predict / rollout
    evaluation     WB2-style scores (RMSE, ACC, bias, spectra) by lead time
    plots          matplotlib figures of scores and fields

This package exports the data API (what `sphere_plugin.data.weather` offered);
import the other modules by name.
"""

from sphere_plugin.train.batching import BatchIterator
from sphere_plugin.train.batching import batch_rows
from sphere_plugin.weather.conventions import canonicalize
from sphere_plugin.weather.conventions import open_dataset
from sphere_plugin.weather.data import chunk_statistics
from sphere_plugin.weather.data import compute_normalizer
from sphere_plugin.weather.data import statistics_plan
from sphere_plugin.weather.data import WeatherData
from sphere_plugin.weather.forcings import SOLAR_CONSTANT
from sphere_plugin.weather.forcings import solar_position
from sphere_plugin.weather.forcings import time_features
from sphere_plugin.weather.forcings import toa_solar_radiation
from sphere_plugin.weather.normalization import NORMALIZER_FILENAME
from sphere_plugin.weather.normalization import Normalizer
from sphere_plugin.weather.spec import COMPUTED_FORCING_CHANNELS
from sphere_plugin.weather.spec import COMPUTED_FORCINGS
from sphere_plugin.weather.spec import SPLITS
from sphere_plugin.weather.spec import WeatherSpec
